package health

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

// input is a report (results non-empty) or a tick.
type input struct {
	at time.Time
	r  Report
}

func (x input) apply(s *State) bool {
	if len(x.r.Checks) == 0 {
		return s.Tick(x.at)
	}
	return s.Report(x.at, x.r)
}

func randomInputs(rng *rand.Rand, n int) []input {
	edges := []Node{{"edge-a", "us-east"}, {"edge-b", "us-east"}, {"edge-c", "eu-west"}, {"edge-d", "eu-west"}, {"edge-e", "ap-south"}}
	at := t0
	// Each edge leans to pass or fail for a while, so verdicts form and flip.
	lean := make([]int, len(edges))
	in := make([]input, n)
	for i := range in {
		at = at.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
		if rng.IntN(50) == 0 {
			at = at.Add(-time.Duration(rng.IntN(3000)) * time.Millisecond)
		}
		if rng.IntN(8) == 0 {
			in[i] = input{at: at}
			continue
		}
		k := rng.IntN(len(edges))
		if rng.IntN(20) == 0 {
			lean[k] = rng.IntN(10)
		}
		cs := make([]Check, 1+rng.IntN(3))
		for j := range cs {
			cs[j] = Check{OK: rng.IntN(10) >= lean[k], Detail: "d"}
		}
		in[i] = input{at: at, r: Report{Edge: edges[k].ID, Region: edges[k].Region, Checks: cs}}
	}
	return in
}

func TestDeterministicReplay(t *testing.T) {
	reached := map[Verdict]int{}
	for seed := range uint64(20) {
		in := randomInputs(rand.New(rand.NewPCG(seed, 0x4ea1)), 2000)
		a := New(policy.Health{StaleAfter: 20 * time.Second})
		b := a
		changed := make([]bool, len(in))
		var mid State
		for i, x := range in {
			if changed[i] = x.apply(&a); changed[i] {
				reached[a.Status().Verdict]++
			}
			if i == len(in)/2 {
				data, _ := a.MarshalBinary()
				if err := mid.UnmarshalBinary(data); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !reflect.DeepEqual(b, New(policy.Health{StaleAfter: 20 * time.Second})) {
			t.Fatalf("seed %d: applying inputs to one copy changed another", seed)
		}
		for i, x := range in {
			if got := x.apply(&b); got != changed[i] {
				t.Fatalf("seed %d step %d: replay returned %v, first run %v", seed, i, got, changed[i])
			}
			if i > len(in)/2 {
				x.apply(&mid)
			}
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: replays diverged:\n%+v\n%+v", seed, a, b)
		}
		if !reflect.DeepEqual(a, mid) {
			t.Fatalf("seed %d: a state restored from an encoding halfway diverged:\n%+v\n%+v", seed, a, mid)
		}
	}
	if reached[Healthy] == 0 || reached[Unhealthy] == 0 {
		t.Fatalf("verdict changes %v: the random inputs must reach both verdicts", reached)
	}
	t.Logf("verdict changes: %v", reached)
}

func TestEncodingRefusesCorruptData(t *testing.T) {
	for name, data := range map[string]string{
		"not json":      "{",
		"other version": `{"V":9,"H":{}}`,
		"no policy":     `{"V":1,"H":{}}`,
		"edges out of order": `{"V":1,"H":{"Policy":{"HealthyThreshold":2,"UnhealthyThreshold":3,"StaleAfter":30000000000},` +
			`"Edges":[{"ID":"b"},{"ID":"a"}]}}`,
	} {
		var s State
		if err := s.UnmarshalBinary([]byte(data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v, want ErrCorrupt", name, err)
		}
	}
}
