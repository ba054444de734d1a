package breaker

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

// input is one recorded call, so that a sequence can be replayed exactly.
type input struct {
	at   time.Time
	kind int
	o    Outcomes
	edge string
	ok   bool
	// full: the cell's ejection cap has no room (for an observe).
	full bool
}

const (
	inObserve = iota
	inTick
	inGrant
	inProbe
	inReset
)

// randomInputs draws a sequence that visits every state: mostly outcomes,
// frequent ticks and probes, rare resets, and a leader clock that sometimes
// steps back.
func randomInputs(rng *rand.Rand, n int) []input {
	edges := []string{"edge-a", "edge-b", "edge-c", "edge-d"}
	at := t0
	in := make([]input, n)
	for i := range in {
		if rng.IntN(50) == 0 {
			at = at.Add(-time.Duration(rng.IntN(1000)) * time.Millisecond)
		} else {
			at = at.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
		}
		x := input{at: at, edge: edges[rng.IntN(len(edges))], ok: rng.IntN(2) == 0}
		switch r := rng.IntN(200); {
		case r < 100:
			x.kind = inObserve
			x.o = Outcomes{Successes: uint32(rng.IntN(8)), ConnectErrors: uint32(rng.IntN(3)),
				Timeouts: uint32(rng.IntN(2)), Status5xx: uint32(rng.IntN(4)), Edge: x.edge}
			x.full = rng.IntN(3) == 0
		case r < 140:
			x.kind = inTick
		case r < 170:
			x.kind = inGrant
		case r < 199:
			x.kind = inProbe
		default:
			x.kind = inReset
		}
		in[i] = x
	}
	return in
}

// apply returns what the call returned, to compare replays.
func (x input) apply(b *Breaker) (Transition, bool) {
	switch x.kind {
	case inObserve:
		full := x.full
		return b.ObserveCapped(x.at, x.o, func() (bool, string) { return !full, "no room" })
	case inTick:
		return b.Tick(x.at)
	case inGrant:
		return Transition{}, b.GrantProbe(x.at, x.edge)
	case inProbe:
		return b.ProbeResult(x.at, x.edge, x.ok)
	}
	return b.Reset(x.at)
}

func checkInvariants(t *testing.T, b Breaker) {
	t.Helper()
	s, p := b.Status(), b.Policy()
	switch {
	case s.State == Open && !s.EjectedUntil.Equal(s.OpenedAt.Add(s.Ejection)):
		t.Fatalf("open until %s, not opened-at %s + ejection %s", s.EjectedUntil, s.OpenedAt, s.Ejection)
	case s.State != Closed && s.Trips == 0:
		t.Fatalf("%s with no trip counted", s.State)
	case s.State != HalfOpen && s.ProbeHolder != "":
		t.Fatalf("%s with probe holder %s", s.State, s.ProbeHolder)
	case s.State != Closed && s.TripRefused:
		t.Fatalf("%s with a refused trip", s.State)
	case s.Ejection > p.MaxEjection:
		t.Fatalf("ejection %s above the cap %s", s.Ejection, p.MaxEjection)
	}
}

func TestDeterministicReplay(t *testing.T) {
	reached := map[State]int{}
	refused := 0
	for seed := range uint64(20) {
		in := randomInputs(rand.New(rand.NewPCG(seed, 0xb7ea)), 3000)
		a := New(policy.Breaker{MaxEjection: 40 * time.Second})
		b := a // an independent copy
		initial := a
		results := make([]Transition, len(in))
		oks := make([]bool, len(in))
		var mid Breaker
		for i, x := range in {
			results[i], oks[i] = x.apply(&a)
			if oks[i] && results[i].From != results[i].To {
				reached[results[i].To]++
			}
			if !oks[i] && x.kind == inObserve && results[i].Reason != "" {
				refused++
			}
			checkInvariants(t, a)
			if i == len(in)/2 {
				data, err := a.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				if err := mid.UnmarshalBinary(data); err != nil {
					t.Fatal(err)
				}
			}
		}
		if b != initial {
			t.Fatalf("seed %d: applying inputs to one copy changed another", seed)
		}
		for i, x := range in {
			tr, ok := x.apply(&b)
			if tr != results[i] || ok != oks[i] {
				t.Fatalf("seed %d step %d: replay returned %+v %v, first run %+v %v", seed, i, tr, ok, results[i], oks[i])
			}
			if i > len(in)/2 {
				x.apply(&mid)
			}
		}
		if a != b {
			t.Fatalf("seed %d: replays diverged:\n%+v\n%+v", seed, a.Status(), b.Status())
		}
		if mid != a {
			t.Fatalf("seed %d: a breaker restored from an encoding halfway diverged:\n%+v\n%+v", seed, mid.Status(), a.Status())
		}
	}
	for _, s := range []State{Closed, Open, HalfOpen} {
		if reached[s] == 0 {
			t.Errorf("the random inputs never entered %s: the test would not notice divergence there", s)
		}
	}
	if refused == 0 {
		t.Error("the random inputs never had a trip refused by the ejection cap")
	}
	t.Logf("transitions into each state: %v; refused trips: %d", reached, refused)
}
