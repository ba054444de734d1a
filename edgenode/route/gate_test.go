package route

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/breaker"
	"github.com/edgecell/edgecell/internal/policy"
)

func putBreaker(id string, s pb.BreakerState, modRev uint64) *pb.Event {
	return &pb.Event{Kind: &pb.Event_PutBreaker{PutBreaker: &pb.BreakerStatus{Endpoint: id, State: s, ModRevision: modRev}}}
}

func putHealth(id string, v pb.HealthVerdict, modRev uint64) *pb.Event {
	return &pb.Event{Kind: &pb.Event_PutHealth{PutHealth: &pb.HealthStatus{Endpoint: id, Verdict: v, ModRevision: modRev}}}
}

// gateOf finds endpoint id's gate in tb.
func gateOf(t testing.TB, tb *Table, id string) *Gate {
	t.Helper()
	g := tb.Gate(id)
	if g == nil {
		t.Fatalf("endpoint %s not in the table", id)
	}
	return g
}

func mustApply(t testing.TB, tb *Table, rev uint64, evs ...*pb.Event) *Table {
	t.Helper()
	nt, err := tb.Apply(change(rev, evs...))
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

func TestGatesFollowEventsAndResets(t *testing.T) {
	const (
		open     = pb.BreakerState_BREAKER_STATE_OPEN
		halfOpen = pb.BreakerState_BREAKER_STATE_HALF_OPEN
		closed   = pb.BreakerState_BREAKER_STATE_CLOSED
		sick     = pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY
		well     = pb.HealthVerdict_HEALTH_VERDICT_HEALTHY
	)
	now := time.Now().UnixNano()
	tb := mustBuild(t, "us-east", testState())
	const id = "us1" // of cell "everywhere"
	a1 := gateOf(t, tb, id)

	tb = mustApply(t, tb, 8, putBreaker(id, open, 8))
	if got := gateOf(t, tb, id).Check(now); got != BreakerOpen {
		t.Fatalf("after put_breaker OPEN: %v", got)
	}
	if gateOf(t, tb, id) != a1 {
		t.Fatal("a change gave the endpoint a new gate")
	}
	tb = mustApply(t, tb, 9, putPlacement("new-key", "everywhere"), putBreaker(id, halfOpen, 9))
	if got := a1.Check(now); got != BreakerHalfOpen {
		t.Fatalf("after HALF_OPEN: %v", got)
	}
	tb = mustApply(t, tb, 10, putBreaker(id, closed, 10), putHealth(id, sick, 10))
	if got := a1.Check(now); got != Unhealthy {
		t.Fatalf("after UNHEALTHY: %v", got)
	}
	tb = mustApply(t, tb, 11, putHealth(id, well, 11))
	if got := a1.Check(now); got != Allowed {
		t.Fatalf("after HEALTHY and CLOSED: %v", got)
	}
	if tb.Breaker(id).GetState() != closed || tb.Health(id).GetVerdict() != well {
		t.Fatalf("table statuses %v %v", tb.Breaker(id), tb.Health(id))
	}

	// A reset lists every status; an endpoint it does not list is closed.
	tb = mustApply(t, tb, 12, putBreaker(id, open, 12), putHealth(id, sick, 12))
	st := testState()
	st.Revision = 20
	reset, err := tb.Replace(st)
	if err != nil {
		t.Fatal(err)
	}
	if gateOf(t, reset, id) != a1 {
		t.Fatal("a reset gave the endpoint a new gate: local state would be lost")
	}
	if got := a1.Check(now); got != Allowed {
		t.Fatalf("after a reset not listing the endpoint: %v", got)
	}
	if s, rev := a1.Global(); s != breaker.Closed || rev != 20 {
		t.Fatalf("global %v@%d after the reset", s, rev)
	}
	st.Revision = 21
	st.Breakers = []*pb.BreakerStatus{{Endpoint: id, State: open, ModRevision: 21}}
	if reset, err = reset.Replace(st); err != nil {
		t.Fatal(err)
	}
	if got := a1.Check(now); got != BreakerOpen || reset.Breaker(id) == nil {
		t.Fatalf("after a reset listing it open: %v", got)
	}
	// A stale status (an older revision) never wins over a newer one.
	reset = mustApply(t, reset, 22, putBreaker(id, closed, 3))
	if got := a1.Check(now); got != BreakerOpen {
		t.Fatalf("a stale CLOSED reopened the endpoint: %v", got)
	}

	// An endpoint that leaves the config loses its gate and statuses.
	cellA := st.Config.Cells[0] // "everywhere"
	var kept []*pb.Endpoint
	for _, e := range cellA.Endpoints {
		if e.Id != id {
			kept = append(kept, e)
		}
	}
	reset = mustApply(t, reset, 23, putCell(&pb.Cell{Id: cellA.Id, Endpoints: kept}))
	if reset.Breaker(id) != nil || reset.gates.lookup(id) != nil {
		t.Fatal("status or gate kept for an endpoint no cell has")
	}
}

// A fresh table (an edge starting from its cache) learns the global states
// it was built with.
func TestBuildAppliesStatuses(t *testing.T) {
	st := testState()
	id := st.Config.Cells[0].Endpoints[0].Id
	st.Breakers = []*pb.BreakerStatus{{Endpoint: id, State: pb.BreakerState_BREAKER_STATE_OPEN, ModRevision: 5}}
	st.Health = []*pb.HealthStatus{{Endpoint: "ghost", Verdict: pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY, ModRevision: 5}}
	tb := mustBuild(t, "us-east", st)
	if got := gateOf(t, tb, id).Check(time.Now().UnixNano()); got != BreakerOpen {
		t.Fatalf("built with OPEN: %v", got)
	}
	if tb.Health("ghost") != nil {
		t.Fatal("status of an unknown endpoint kept")
	}
}

func TestOutcomeCountsTakeAndReturn(t *testing.T) {
	g := newGate("e1", policy.DefaultBreaker(), make(chan struct{}, 1))
	if g.TakeOutcomes() != nil {
		t.Fatal("outcomes from nothing")
	}
	g.Record(Timeout)
	for range 3 {
		g.Record(Success)
	}
	g.Record(Status5xx)
	got := g.TakeOutcomes()
	want := []*pb.EndpointOutcomes{{Endpoint: "e1", Successes: 3, Timeouts: 1}, {Endpoint: "e1", Status_5Xx: 1}}
	if !equalOutcomes(got, want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	if g.TakeOutcomes() != nil {
		t.Fatal("counts not zeroed by Take")
	}
	g.Record(ConnectError)
	for _, o := range got {
		g.ReturnOutcomes(o)
	}
	// Returned counts merge; the failure run (5xx, then connect) still
	// follows the last success.
	want = []*pb.EndpointOutcomes{{Endpoint: "e1", Successes: 3, Timeouts: 1}, {Endpoint: "e1", ConnectErrors: 1, Status_5Xx: 1}}
	if got := g.TakeOutcomes(); !equalOutcomes(got, want) {
		t.Fatalf("after a failed report: %v, want %v", got, want)
	}
	g.ReturnOutcomes(&pb.EndpointOutcomes{Successes: 1<<32 - 1})
	g.ReturnOutcomes(&pb.EndpointOutcomes{Successes: 1<<32 - 1})
	if got := g.TakeOutcomes(); len(got) != 1 || got[0].GetSuccesses() != maxPending {
		t.Fatalf("kept %v, want one entry with the cap %d successes", got, maxPending)
	}
}

// The order of outcomes within a batch matters only in one way: failures
// after the batch's last success are reported apart, after the rest.
func TestOutcomeOrderWithinABatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  []Outcome
		want []*pb.EndpointOutcomes
	}{
		{"only successes", []Outcome{Success, Success}, []*pb.EndpointOutcomes{{Endpoint: "e1", Successes: 2}}},
		{"only failures", []Outcome{ConnectError, Timeout, Status5xx},
			[]*pb.EndpointOutcomes{{Endpoint: "e1", ConnectErrors: 1, Timeouts: 1, Status_5Xx: 1}}},
		{"failures then a success", []Outcome{Status5xx, Status5xx, Success},
			[]*pb.EndpointOutcomes{{Endpoint: "e1", Successes: 1, Status_5Xx: 2}}},
		{"a success then failures", []Outcome{Success, ConnectError, Status5xx, Status5xx},
			[]*pb.EndpointOutcomes{{Endpoint: "e1", Successes: 1}, {Endpoint: "e1", ConnectErrors: 1, Status_5Xx: 2}}},
		{"interleaved", []Outcome{Status5xx, Success, Status5xx, Success, Timeout},
			[]*pb.EndpointOutcomes{{Endpoint: "e1", Successes: 2, Status_5Xx: 2}, {Endpoint: "e1", Timeouts: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate("e1", policy.DefaultBreaker(), make(chan struct{}, 1))
			for _, o := range tc.seq {
				g.Record(o)
			}
			if got := g.TakeOutcomes(); !equalOutcomes(got, tc.want) {
				t.Fatalf("took %v, want %v", got, tc.want)
			}
		})
	}
}

// A run of failures reaching the threshold, and a local trip, each ask
// once for an urgent report.
func TestUrgentReport(t *testing.T) {
	p := policy.DefaultBreaker()
	p.ConsecutiveFailures = 3
	wake := make(chan struct{}, 1)
	g := newGate("e1", p, wake)
	woken := func() bool {
		select {
		case <-wake:
			return true
		default:
			return false
		}
	}
	g.Record(Status5xx)
	g.Record(Status5xx)
	g.Record(Success) // the run starts over
	g.Record(Status5xx)
	g.Record(Timeout)
	if woken() {
		t.Fatal("woken before the run reached the threshold")
	}
	g.Record(ConnectError)
	if !woken() {
		t.Fatal("not woken when the run reached the threshold")
	}
	g.Record(Status5xx)
	if woken() {
		t.Fatal("woken again by the same run")
	}
	now := time.Now().UnixNano()
	for !g.ConnectFailed(now) {
	}
	if !woken() {
		t.Fatal("not woken by a local trip")
	}
}

func equalOutcomes(a, b []*pb.EndpointOutcomes) bool {
	return slices.EqualFunc(a, b, func(x, y *pb.EndpointOutcomes) bool { return proto.Equal(x, y) })
}

// BenchmarkGateCheck is the breaker check on the request path: the gate of
// the endpoint chosen (ns/op and allocs are the cost the check adds).
func BenchmarkGateCheck(b *testing.B) {
	tb := mustBuild(b, "us-east", bigState(100_000))
	c := tb.LookupString("tenant-0000001")
	it := c.Candidates(0)
	g := it.Next().Gate
	now := time.Now().UnixNano()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if g.Check(now) == Allowed {
			n++
		}
	}
	if n == 0 {
		b.Fatal("never allowed")
	}
}

// BenchmarkRouteWithGate is BenchmarkRoute plus the gate check, as the
// proxy does it: compare the two for the added cost.
func BenchmarkRouteWithGate(b *testing.B) {
	tb := mustBuild(b, "us-east", bigState(100_000))
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "tenant-%07d", (i*7919)%100_000)
	}
	now := time.Now().UnixNano()
	b.ReportAllocs()
	var n int
	for i := 0; b.Loop(); i++ {
		c := tb.Lookup(keys[i&1023])
		it := c.Candidates(rand.Uint64())
		for e := it.Next(); e != nil; e = it.Next() {
			if e.Gate.Check(now) == Allowed {
				n++
				break
			}
		}
	}
	if n == 0 {
		b.Fatal("no endpoint chosen")
	}
}

// BenchmarkGateParallel is what the proxy does to a gate per request, on
// every core at once for one endpoint: check, connect succeeded, count.
func BenchmarkGateParallel(b *testing.B) {
	g := newGate("e1", policy.DefaultBreaker(), make(chan struct{}, 1))
	now := time.Now().UnixNano()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if g.Check(now) == Allowed {
				g.ConnectSucceeded()
				g.Record(Success)
			}
		}
	})
}

// TestPanicThreshold: a cell panics when routable*100 < threshold*endpoints,
// counting every region's endpoints, and never when the threshold is 0.
func TestPanicThreshold(t *testing.T) {
	const open = pb.BreakerState_BREAKER_STATE_OPEN
	sick := pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY
	tests := []struct {
		name      string
		threshold uint32
		out       []*pb.Event // of endpoints a (us-east), b (us-east), c (eu-west)
		routable  int
		panicking bool
	}{
		{"off, all open", 0, []*pb.Event{putBreaker("a", open, 8), putBreaker("b", open, 8), putBreaker("c", open, 8)}, 0, false},
		{"50, all out", 50, []*pb.Event{putBreaker("a", open, 8), putHealth("b", sick, 8), putBreaker("c", open, 8)}, 0, true},
		{"50, 1 of 3 routable (33%)", 50, []*pb.Event{putBreaker("a", open, 8), putBreaker("c", open, 8)}, 1, true},
		{"50, 2 of 3 routable (67%)", 50, []*pb.Event{putBreaker("a", open, 8)}, 2, false},
		{"50, none out", 50, nil, 3, false},
		{"100, one out", 100, []*pb.Event{putHealth("c", sick, 8)}, 2, true},
		{"100, none out", 100, nil, 3, false},
		{"over 100 counts as 100", 250, []*pb.Event{putHealth("c", sick, 8)}, 2, true},
	}
	now := time.Now().UnixNano()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &pb.State{Revision: 7, Config: &pb.RoutingConfig{Cells: []*pb.Cell{{
				Id: "c1", PanicThresholdPercent: tc.threshold,
				Endpoints: []*pb.Endpoint{ep("a", "us-east", 1), ep("b", "us-east", 1), ep("c", "eu-west", 1)},
			}}}}
			tb := mustApply(t, mustBuild(t, "us-east", st), 8, tc.out...)
			c := tb.Cell("c1")
			if want := min(tc.threshold, 100); c.PanicThreshold() != want {
				t.Fatalf("PanicThreshold() = %d, want %d", c.PanicThreshold(), want)
			}
			routable, panicking := c.Panic(now)
			if panicking != tc.panicking || (tc.threshold != 0 && routable != tc.routable) {
				t.Fatalf("Panic() = %d, %v; want %d, %v", routable, panicking, tc.routable, tc.panicking)
			}
			// A cell put again with only its threshold changed takes the new
			// one and keeps its endpoints' gates (and so their states).
			pc := proto.CloneOf(st.Config.Cells[0])
			pc.PanicThresholdPercent = 0
			nt := mustApply(t, tb, 9, putCell(pc))
			if _, p := nt.Cell("c1").Panic(now); p || nt.Cell("c1").PanicThreshold() != 0 {
				t.Fatal("threshold 0 put again: still panicking")
			}
			if gateOf(t, nt, "a") != gateOf(t, tb, "a") {
				t.Fatal("changing the threshold replaced a gate")
			}
		})
	}
}

// BenchmarkPanicCheck is what a cell with a panic threshold adds per request:
// a gate check of each of its endpoints.
func BenchmarkPanicCheck(b *testing.B) {
	st := &pb.State{Revision: 1, Config: &pb.RoutingConfig{Cells: []*pb.Cell{{
		Id: "c1", PanicThresholdPercent: 50,
		Endpoints: []*pb.Endpoint{ep("a", "us-east", 1), ep("b", "us-east", 1), ep("c", "eu-west", 1), ep("d", "ap-south", 1)},
	}}}}
	c := mustBuild(b, "us-east", st).Cell("c1")
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for b.Loop() {
		if _, p := c.Panic(now); p {
			b.Fatal("panicking with every endpoint routable")
		}
	}
}
