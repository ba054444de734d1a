//go:build fault

package fault

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

const ms = time.Millisecond

// w is a write, acknowledged unless an outcome is given.
func w(client int, key, value string, call, ret time.Duration, o ...Outcome) Op {
	op := Op{Kind: KindWrite, Client: client, Key: key, Value: value, Call: call * ms, Return: ret * ms}
	if len(o) > 0 {
		op.Outcome = o[0]
	}
	return op
}

func r(client int, key, value string, call, ret time.Duration) Op {
	return Op{Kind: KindRead, Client: client, Key: key, Value: value, Call: call * ms, Return: ret * ms, Outcome: OK}
}

func final(op Op) Op { op.Final = true; return op }

func TestCheckLinearizable(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"empty", nil, porcupine.Ok},
		{"read the initial value", []Op{r(0, "a", "c0", 0, 1)}, porcupine.Ok},
		{"sequential write then read", []Op{w(0, "a", "c1", 0, 10), r(1, "a", "c1", 20, 30)}, porcupine.Ok},
		{"concurrent read sees either", []Op{w(0, "a", "c1", 0, 10), r(1, "a", "c0", 5, 6), r(2, "a", "c1", 7, 8)}, porcupine.Ok},
		{"stale read after an acknowledged write", []Op{w(0, "a", "c1", 0, 10), r(1, "a", "c0", 20, 30)}, porcupine.Illegal},
		{"read goes back in time", []Op{
			w(0, "a", "c1", 0, 10), w(0, "a", "c2", 20, 30), r(1, "a", "c2", 40, 50), r(1, "a", "c1", 60, 70),
		}, porcupine.Illegal},
		{"a value nobody wrote", []Op{r(0, "a", "c9", 0, 1)}, porcupine.Illegal},
		{"unknown write may land late", []Op{
			w(0, "a", "c1", 0, 10, Unknown), r(1, "a", "c0", 20, 30), r(1, "a", "c1", 40, 50),
		}, porcupine.Ok},
		{"failed write is never seen", []Op{
			{Kind: KindWrite, Key: "a", Value: "c1", Call: 0, Return: 10 * ms, Outcome: Failed}, r(1, "a", "c1", 20, 30),
		}, porcupine.Illegal},
		{"keys are independent registers", []Op{w(0, "a", "c1", 0, 10), r(1, "b", "c0", 20, 30)}, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckLinearizable(&History{Ops: tc.ops, Initial: "c0"}, 10*time.Second)
			if got.Result != tc.want {
				t.Fatalf("got %s, want %s", got.Result, tc.want)
			}
		})
	}
}

func TestCheckLinearizableUnknownWrites(t *testing.T) {
	h := &History{Initial: "c0", Ops: []Op{
		w(0, "a", "c1", 0, 10, Unknown),
		r(1, "a", "c0", 20, 30),
		r(1, "a", "c1", 40, 50), // the unknown write landed late
		r(1, "a", "c1", 60, 70),
	}}
	if got := CheckLinearizable(h, 10*time.Second); got.Result != porcupine.Ok {
		t.Fatalf("unknown write taking effect late: got %s, want Ok", got.Result)
	}
	h.Ops = append(h.Ops, r(1, "a", "c0", 80, 90)) // and then undone: impossible
	if got := CheckLinearizable(h, 10*time.Second); got.Result != porcupine.Illegal {
		t.Fatalf("unknown write undone: got %s, want Illegal", got.Result)
	}
}

func TestCheckNonces(t *testing.T) {
	signed := func(nonce, edge string, status int) Op {
		return Op{Kind: KindSigned, KeyID: "k1", Nonce: nonce, Edge: edge, Status: status, Outcome: OK}
	}
	ok := &History{
		Ops: []Op{
			signed("n1", "us-east", 200), signed("n1", "eu-west", 401),
			signed("n2", "us-east", 503), signed("n2", "eu-west", 503),
			{Kind: KindReplay, KeyID: "k1", Nonce: "n1", Edge: "ap-south", Status: 401, Outcome: OK},
			{Kind: KindReplay, KeyID: "k1", Nonce: "n2", Edge: "ap-south", Status: 200, Outcome: OK}, // first 2xx for n2
			{Kind: KindSigned, KeyID: "k2", Nonce: "n1", Status: 200, Outcome: OK},                   // another key
		},
		Hits: []Hit{{KeyID: "k1", Nonce: "n1"}, {KeyID: "k1", Nonce: "n2"}, {KeyID: "k2", Nonce: "n1"}},
	}
	if vs := CheckNonces(ok); len(vs) != 0 {
		t.Fatalf("violations in a clean history: %v", vs)
	}

	twice := &History{Hits: []Hit{{KeyID: "k1", Nonce: "n1", Endpoint: "a"}, {KeyID: "k1", Nonce: "n1", Endpoint: "b"}}}
	if vs := CheckNonces(twice); len(vs) != 1 || vs[0].Rule != RuleNonceBackend {
		t.Fatalf("a nonce at the backend twice: got %v", vs)
	}

	two2xx := &History{Ops: []Op{
		signed("n1", "us-east", 200),
		{Kind: KindReplay, KeyID: "k1", Nonce: "n1", Edge: "ap-south", Status: 204, Outcome: OK},
	}}
	if vs := CheckNonces(two2xx); len(vs) != 1 || vs[0].Rule != RuleNonce2xx {
		t.Fatalf("a nonce with two 2xx: got %v", vs)
	}
}

func TestCheckFinalReads(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []Op
		bad  bool
	}{
		{"last acknowledged write", []Op{w(0, "a", "c1", 0, 10), w(0, "a", "c2", 20, 30), final(r(0, "a", "c2", 100, 110))}, false},
		{"an earlier write is lost", []Op{w(0, "a", "c1", 0, 10), w(0, "a", "c2", 20, 30), final(r(0, "a", "c1", 100, 110))}, true},
		{"concurrent acknowledged writes: either", []Op{w(0, "a", "c1", 0, 30), w(1, "a", "c2", 10, 20), final(r(0, "a", "c1", 100, 110))}, false},
		{"a later unknown write", []Op{w(0, "a", "c1", 0, 10), w(0, "a", "c3", 20, 30, Unknown), final(r(0, "a", "c3", 100, 110))}, false},
		{"an unknown write before the last acknowledged one", []Op{w(0, "a", "c3", 0, 10, Unknown), w(0, "a", "c1", 20, 30), final(r(0, "a", "c3", 100, 110))}, false},
		{"a failed write", []Op{w(0, "a", "c1", 0, 10), w(0, "a", "c4", 20, 30, Failed), final(r(0, "a", "c4", 100, 110))}, true},
		{"initial after an acknowledged write", []Op{w(0, "a", "c1", 0, 10), final(r(0, "a", "c0", 100, 110))}, true},
		{"initial when nothing was acknowledged", []Op{w(0, "a", "c1", 0, 10, Unknown), final(r(0, "a", "c0", 100, 110))}, false},
		{"no final read", []Op{w(0, "a", "c1", 0, 10), r(0, "a", "c1", 20, 30)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := CheckFinalReads(&History{Ops: tc.ops, Initial: "c0"})
			if tc.bad != (len(vs) > 0) {
				t.Fatalf("violations %v, want some: %v", vs, tc.bad)
			}
			for _, v := range vs {
				if v.Rule != RuleFinalRead {
					t.Fatalf("rule %q", v.Rule)
				}
			}
		})
	}
}

func TestCheckProcesses(t *testing.T) {
	ok := []ProcReport{{Name: "n1", Running: true, Log: "level=INFO msg=started\n"}}
	if vs := CheckProcesses(ok); len(vs) != 0 {
		t.Fatalf("violations for a healthy process: %v", vs)
	}
	for _, p := range []ProcReport{
		{Name: "n1", Running: false},
		{Name: "n2", Running: true, Exits: []string{"exit status 1"}},
		{Name: "n3", Running: true, Log: "a\npanic: sealed segment has no index block\ngoroutine 1\n"},
		{Name: "edge", Running: true, Log: "fatal error: concurrent map writes\n"},
	} {
		vs := CheckProcesses([]ProcReport{p})
		if len(vs) != 1 || vs[0].Rule != RuleProcess || !strings.Contains(vs[0].Detail, p.Name) {
			t.Fatalf("%+v: got %v, want one process violation", p, vs)
		}
	}
}

func TestCheckStaticStability(t *testing.T) {
	plain := func(edge string, call, ret time.Duration, o Outcome, status int) Op {
		return Op{Kind: KindPlain, Edge: edge, Call: call * ms, Return: ret * ms, Outcome: o, Status: status}
	}
	h := &History{
		Live: map[string][]Interval{"us-east": {{0, 100 * ms}, {200 * ms, 300 * ms}}},
		Ops: []Op{
			plain("us-east", 10, 20, OK, 200),
			plain("us-east", 90, 110, Unknown, 0), // the edge was killed during it
			plain("us-east", 150, 160, Failed, 0), // the edge was down
			plain("us-east", 210, 220, OK, 204),
		},
	}
	if vs := CheckStaticStability(h); len(vs) != 0 {
		t.Fatalf("violations: %v", vs)
	}
	h.Ops = append(h.Ops, plain("us-east", 230, 240, OK, 503))
	if vs := CheckStaticStability(h); len(vs) != 1 || vs[0].Rule != RuleStaticStability {
		t.Fatalf("a 503 from a live edge: got %v", vs)
	}
	a := ComputeAvailability(h)
	if c := a[KindPlain][PhaseQuiet]; c.OK != 2 || c.Total != 3 {
		t.Fatalf("plain availability %v, want 2/3 (requests to live edges only)", c)
	}
}

func TestAvailabilityPhases(t *testing.T) {
	h := &History{
		Faults: []FaultEvent{{Name: "kill-leader", Interval: Interval{100 * ms, 200 * ms}}},
		Ops: []Op{
			w(0, "a", "c1", 10, 20), w(0, "a", "c1", 150, 160, Unknown), w(0, "a", "c1", 170, 180),
			{Kind: KindSigned, KeyID: "k", Nonce: "n1", Call: 120 * ms, Outcome: OK, Status: 503},
			{Kind: KindSigned, KeyID: "k", Nonce: "n1", Call: 121 * ms, Outcome: OK, Status: 200},
			{Kind: KindSigned, KeyID: "k", Nonce: "n2", Call: 130 * ms, Outcome: OK, Status: 503},
			final(r(0, "a", "c1", 300, 310)),
		},
	}
	a := ComputeAvailability(h)
	if got := a[KindWrite]; got[PhaseFault] != (Counts{1, 2}) || got[PhaseQuiet] != (Counts{1, 1}) {
		t.Fatalf("writes %v", got)
	}
	if got := a[KindSigned][PhaseFault]; got != (Counts{1, 2}) {
		t.Fatalf("signed %v, want one of two nonces accepted", got)
	}
	if got := a[KindRead]; got[PhaseQuiet].Total != 0 {
		t.Fatalf("final reads counted in availability: %v", got)
	}
}
