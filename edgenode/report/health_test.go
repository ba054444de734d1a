package report

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

// checkBackend is an HTTP endpoint that counts health checks by path and
// answers them with the status it is told.
type checkBackend struct {
	*httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	paths  map[string]int
}

func newCheckBackend(t *testing.T) *checkBackend {
	b := &checkBackend{paths: map[string]int{}}
	b.status.Store(http.StatusOK)
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.paths[r.URL.Path]++
		b.mu.Unlock()
		w.WriteHeader(int(b.status.Load()))
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *checkBackend) hits(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paths[path]
}

// results gathers every reported result per endpoint, in order.
func (f *fakeCoordinator) results() map[string][]*pb.CheckResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]*pb.CheckResult{}
	for _, r := range f.health {
		for _, c := range r.GetChecks() {
			out[c.GetEndpoint()] = append(out[c.GetEndpoint()], c.GetResults()...)
		}
	}
	return out
}

func newChecker(t *testing.T, addr string, st *pb.State) (*Checker, *atomic.Pointer[route.Table]) {
	t.Helper()
	p, conns := tableAndConns(t, addr, st)
	return NewChecker(CheckerConfig{Edge: "edge-1", Region: "us-east", Table: p, Coordinators: conns, Interval: 10 * time.Millisecond}), p
}

func runChecker(t *testing.T, c *Checker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

var fastChecks = &pb.HealthCheckPolicy{HttpPath: "/hc", IntervalMs: 20, TimeoutMs: 20}

// An edge checks the endpoints of its own region and those of regions
// without edges, never those another region's edges check, and reports what
// it saw: the status, or the connection error.
func TestCheckerChecksItsAssignment(t *testing.T) {
	f, addr := startFake(t)
	f.regions = []string{"eu-west", "us-east"}
	east, west, asia := newCheckBackend(t), newCheckBackend(t), newCheckBackend(t)
	east.status.Store(http.StatusServiceUnavailable)
	dead := edgetest.ClosedAddr(t)
	cell := &pb.Cell{Id: "c1", HealthCheck: fastChecks, Endpoints: []*pb.Endpoint{
		{Id: "east", Url: east.URL, Region: "us-east"},
		{Id: "east-dead", Url: "http://" + dead, Region: "us-east"},
		{Id: "west", Url: west.URL, Region: "eu-west"},
		{Id: "asia", Url: asia.URL + "/base", Region: "ap-south"},
	}}
	unchecked := &pb.Cell{Id: "c2", Endpoints: []*pb.Endpoint{{Id: "no-policy", Url: east.URL + "/np", Region: "us-east"}}}
	c, _ := newChecker(t, addr, state(1, cell, unchecked))
	runChecker(t, c)

	testutil.Poll(t, "results for every assigned endpoint", func() bool {
		r := f.results()
		return len(r["east"]) >= 2 && len(r["east-dead"]) >= 2 && len(r["asia"]) >= 2
	})
	if got, want := c.Assigned(), []string{"asia", "east", "east-dead"}; !slices.Equal(got, want) {
		t.Fatalf("assigned %v, want %v", got, want)
	}
	r := f.results()
	if len(r["west"]) > 0 || west.hits("/hc") > 0 {
		t.Fatalf("eu-west's endpoint was checked from us-east, which has its own edges: %d results, %d hits", len(r["west"]), west.hits("/hc"))
	}
	if len(r["no-policy"]) > 0 || east.hits("/np/hc") > 0 {
		t.Fatal("an endpoint of a cell without a health check policy was checked")
	}
	if e := r["east"][0]; e.Ok || e.Detail != "HTTP 503" {
		t.Fatalf("503 endpoint reported %v", e)
	}
	if e := r["east-dead"][0]; e.Ok || !strings.Contains(e.Detail, "connection refused") {
		t.Fatalf("dead endpoint reported %v", e)
	}
	if e := r["asia"][0]; !e.Ok || e.Detail != "HTTP 200" || asia.hits("/base/hc") == 0 {
		t.Fatalf("healthy endpoint reported %v; backend saw %d checks on /base/hc", e, asia.hits("/base/hc"))
	}
}

// A health batch whose outcome is unknown is resent as it was, same batch
// id; results gathered meanwhile wait for the next batch, up to maxPending
// per endpoint, newest kept.
func TestCheckerResendsAHeldBatch(t *testing.T) {
	f, addr := startFake(t)
	f.regions = []string{"us-east"}
	be := newCheckBackend(t)
	c, _ := newChecker(t, addr, state(1, &pb.Cell{Id: "c1", HealthCheck: fastChecks,
		Endpoints: []*pb.Endpoint{{Id: "a", Url: be.URL, Region: "us-east"}}}))
	ctx := context.Background()
	for i := range maxPending + 5 {
		c.record("a", &pb.CheckResult{Ok: i%2 == 0, Detail: "r" + string(rune('A'+i))})
	}
	f.failHealth.Store(true)
	if err := c.Flush(ctx); err == nil {
		t.Fatal("Flush reported no error while the coordinator refused")
	}
	for i := range maxPending + 1 {
		c.record("a", &pb.CheckResult{Ok: true, Detail: "later" + string(rune('A'+i))})
	}
	f.failHealth.Store(false)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ids := slices.Clone(f.healthAttempts)
	batches := slices.Clone(f.health)
	f.mu.Unlock()
	if len(ids) != 3 || ids[0] == 0 || ids[1] != ids[0] || ids[2] == ids[0] || ids[2] == 0 {
		t.Fatalf("batch ids sent %v; want one id twice (the failure, its retry), then a new one", ids)
	}
	first, second := batches[0].GetChecks()[0].GetResults(), batches[1].GetChecks()[0].GetResults()
	if len(first) != maxPending || first[0].Detail != "r"+string(rune('A'+5)) {
		t.Fatalf("the resent batch holds %d results from %v; want the same newest %d as the first attempt", len(first), first[0], maxPending)
	}
	if len(second) != maxPending || second[0].Detail != "laterB" {
		t.Fatalf("the next batch holds %d results from %v; want the newest %d of those gathered meanwhile", len(second), second[0], maxPending)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.health) != 2 {
		t.Fatalf("an empty flush sent a batch: %d batches", len(f.health))
	}
}

// A changed policy restarts the check with it; an endpoint leaving the
// table stops being checked and its pending results are not reported.
func TestCheckerFollowsTheTable(t *testing.T) {
	f, addr := startFake(t)
	f.regions = []string{"us-east"}
	be := newCheckBackend(t)
	cell := &pb.Cell{Id: "c1", HealthCheck: fastChecks, Endpoints: []*pb.Endpoint{{Id: "a", Url: be.URL, Region: "us-east"}}}
	c, table := newChecker(t, addr, state(1, cell))
	runChecker(t, c)
	testutil.Poll(t, "checks on /hc", func() bool { return be.hits("/hc") > 0 })

	moved := &pb.Cell{Id: "c1", HealthCheck: &pb.HealthCheckPolicy{HttpPath: "/moved", IntervalMs: 20, TimeoutMs: 20},
		Endpoints: cell.Endpoints}
	apply(t, table, 2, moved)
	testutil.Poll(t, "checks on the new path", func() bool { return be.hits("/moved") > 0 })

	apply(t, table, 3, &pb.Cell{Id: "c1", HealthCheck: moved.HealthCheck,
		Endpoints: []*pb.Endpoint{{Id: "b", Url: be.URL + "/b", Region: "us-east"}}})
	testutil.Poll(t, "b checked instead of a", func() bool {
		return slices.Equal(c.Assigned(), []string{"b"}) && be.hits("/b/moved") > 0
	})
	// A result for a, recorded as if by a check that was under way, is
	// taken by the next flush but not sent: the coordinators would refuse
	// the batch for naming an endpoint they no longer have.
	c.record("a", &pb.CheckResult{Ok: true, Detail: "late"})
	testutil.Poll(t, "a flush to take the late result", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending["a"]) == 0
	})
	for _, r := range f.results()["a"] {
		if r.Detail == "late" {
			t.Fatal("a result for an endpoint no longer in the table was reported")
		}
	}
}

func apply(t *testing.T, table *atomic.Pointer[route.Table], rev uint64, cell *pb.Cell) {
	t.Helper()
	next, err := table.Load().Apply(&pb.Change{Revision: rev, Events: []*pb.Event{{Kind: &pb.Event_PutCell{PutCell: cell}}}})
	if err != nil {
		t.Fatal(err)
	}
	table.Store(next)
}
