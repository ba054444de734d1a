package report

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeCoordinator is an EdgeService that records what edges send.
type fakeCoordinator struct {
	pb.UnimplementedEdgeServiceServer
	fail atomic.Bool // answer UNAVAILABLE to ReportOutcomes
	// refuse answers NOT_FOUND to ReportOutcomes, as for an endpoint the
	// config no longer has: the batch counted nothing.
	refuse atomic.Bool
	grant  atomic.Bool // grant probe leases

	failHealth atomic.Bool // answer UNAVAILABLE to ReportHealth

	mu       sync.Mutex
	regions  []string // CheckAssignment's answer
	health   []*pb.ReportHealthRequest
	outcomes []*pb.ReportOutcomesRequest
	// Every ReportOutcomes and ReportHealth that arrived, failed ones too.
	outcomeAttempts, healthAttempts []uint64 // batch ids
	acquires                        []*pb.AcquireProbeRequest
	probes                          []*pb.ReportProbeRequest
}

func (f *fakeCoordinator) ReportOutcomes(_ context.Context, req *pb.ReportOutcomesRequest) (*pb.ReportOutcomesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcomeAttempts = append(f.outcomeAttempts, req.GetBatchId())
	if f.fail.Load() {
		return nil, status.Error(codes.Unavailable, "no quorum")
	}
	if f.refuse.Load() {
		return nil, status.Error(codes.NotFound, "outcomes[0].endpoint: endpoint \"a\" is not in the routing config")
	}
	f.outcomes = append(f.outcomes, req)
	return &pb.ReportOutcomesResponse{}, nil
}

func (f *fakeCoordinator) AcquireProbe(_ context.Context, req *pb.AcquireProbeRequest) (*pb.AcquireProbeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquires = append(f.acquires, req)
	return &pb.AcquireProbeResponse{Granted: f.grant.Load()}, nil
}

func (f *fakeCoordinator) ReportProbe(_ context.Context, req *pb.ReportProbeRequest) (*pb.ReportProbeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes = append(f.probes, req)
	return &pb.ReportProbeResponse{}, nil
}

func (f *fakeCoordinator) CheckAssignment(_ context.Context, req *pb.CheckAssignmentRequest) (*pb.CheckAssignmentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &pb.CheckAssignmentResponse{EdgeRegions: f.regions}, nil
}

func (f *fakeCoordinator) ReportHealth(_ context.Context, req *pb.ReportHealthRequest) (*pb.ReportHealthResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthAttempts = append(f.healthAttempts, req.GetBatchId())
	if f.failHealth.Load() {
		return nil, status.Error(codes.Unavailable, "no quorum")
	}
	f.health = append(f.health, req)
	return &pb.ReportHealthResponse{}, nil
}

// counts returns how many of each call arrived.
func (f *fakeCoordinator) counts() (outcomes, acquires, probes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.outcomes), len(f.acquires), len(f.probes)
}

func startFake(t *testing.T) (*fakeCoordinator, string) {
	t.Helper()
	f := &fakeCoordinator{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterEdgeServiceServer(s, f)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return f, ln.Addr().String()
}

// newReporter reports the table held by the returned pointer to addr.
func newReporter(t *testing.T, addr string, st *pb.State) (*Reporter, *atomic.Pointer[route.Table]) {
	t.Helper()
	p, conns := tableAndConns(t, addr, st)
	return New(Config{Edge: "edge-1", Region: "us-east", Table: p, Coordinators: conns}), p
}

// tableAndConns builds a us-east edge's table from st, and connections to
// the coordinator at addr.
func tableAndConns(t *testing.T, addr string, st *pb.State) (*atomic.Pointer[route.Table], *coordconn.Pool) {
	t.Helper()
	tb, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	p := &atomic.Pointer[route.Table]{}
	p.Store(tb)
	conns := coordconn.New(coordconn.Config{Addrs: func() []string { return []string{addr} }})
	t.Cleanup(conns.Close)
	return p, conns
}

func state(rev uint64, cells ...*pb.Cell) *pb.State {
	return &pb.State{Revision: rev, Config: &pb.RoutingConfig{Cells: cells}}
}

func gate(t *testing.T, tb *route.Table, id string) *route.Gate {
	t.Helper()
	g := tb.Gate(id)
	if g == nil {
		t.Fatalf("no endpoint %s", id)
	}
	return g
}

func TestOutcomeBatches(t *testing.T) {
	f, addr := startFake(t)
	cell := &pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{
		{Id: "a", Url: "http://a.example", Region: "us-east"},
		{Id: "b", Url: "http://b.example", Region: "us-east"},
		{Id: "idle", Url: "http://idle.example", Region: "us-east"},
	}}
	r, table := newReporter(t, addr, state(1, cell))
	ctx := context.Background()
	a, b := gate(t, table.Load(), "a"), gate(t, table.Load(), "b")

	if err := r.SendOutcomes(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := f.counts(); n != 0 {
		t.Fatal("a batch was sent with no outcomes")
	}

	// A report whose outcome is unknown (UNAVAILABLE: it may have
	// committed) is resent as it was, with its batch id, and what came
	// since goes in a later batch: no count is in two batches.
	a.Record(route.Success)
	a.Record(route.Timeout)
	f.fail.Store(true)
	for range 2 {
		if err := r.SendOutcomes(ctx); status.Code(err) != codes.Unavailable {
			t.Fatalf("failed report returned %v", err)
		}
	}
	f.fail.Store(false)
	a.Record(route.Success)
	b.Record(route.ConnectError)
	if err := r.SendOutcomes(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ids := slices.Clone(f.outcomeAttempts)
	sent := slices.Clone(f.outcomes)
	f.mu.Unlock()
	if len(ids) != 4 || ids[0] == 0 || ids[1] != ids[0] || ids[2] != ids[0] || ids[3] == ids[0] || ids[3] == 0 {
		t.Fatalf("batch ids sent %v; want one non-zero id three times (two failures, the retry that worked), then a new one", ids)
	}
	wantBatches := []*pb.ReportOutcomesRequest{
		{Edge: "edge-1", Region: "us-east", BatchId: ids[0], Outcomes: []*pb.EndpointOutcomes{
			{Endpoint: "a", Successes: 1}, {Endpoint: "a", Timeouts: 1}, // the timeout came after the last success
		}},
		{Edge: "edge-1", Region: "us-east", BatchId: ids[3], Outcomes: []*pb.EndpointOutcomes{
			{Endpoint: "a", Successes: 1},
			{Endpoint: "b", ConnectErrors: 1},
		}},
	}
	if len(sent) != 2 {
		t.Fatalf("%d batches delivered; want 2", len(sent))
	}
	for i, want := range wantBatches {
		sortOutcomes(sent[i])
		if !proto.Equal(sent[i], want) {
			t.Fatalf("batch %d: %v, want %v", i, sent[i], want)
		}
	}

	// An endpoint that left the table is not reported: the coordinator
	// would refuse the whole batch.
	b.Record(route.Status5xx)
	a.Record(route.Status5xx)
	next, err := table.Load().Apply(&pb.Change{Revision: 2, Events: []*pb.Event{{Kind: &pb.Event_PutCell{PutCell: &pb.Cell{
		Id: "c1", Endpoints: []*pb.Endpoint{cell.Endpoints[0]},
	}}}}})
	if err != nil {
		t.Fatal(err)
	}
	table.Store(next)
	if err := r.SendOutcomes(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.outcomes[2]
	f.mu.Unlock()
	if want := []*pb.EndpointOutcomes{{Endpoint: "a", Status_5Xx: 1}}; len(got.Outcomes) != 1 || !proto.Equal(got.Outcomes[0], want[0]) {
		t.Fatalf("batch after b left: %v", got.Outcomes)
	}
}

// A refused batch counted nothing: its counts go into the next batch,
// which has a new id.
func TestRefusedBatchIsMergedIntoTheNext(t *testing.T) {
	f, addr := startFake(t)
	r, table := newReporter(t, addr, state(1, &pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "a", Url: "http://a.example", Region: "us-east"}}}))
	ctx := context.Background()
	a := gate(t, table.Load(), "a")
	a.Record(route.Success)
	f.refuse.Store(true)
	if err := r.SendOutcomes(ctx); status.Code(err) != codes.NotFound {
		t.Fatalf("refused report returned %v", err)
	}
	if _, held := r.out.hasHeld(); held {
		t.Fatal("a refused batch is held for resending")
	}
	f.refuse.Store(false)
	a.Record(route.Success)
	if err := r.SendOutcomes(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.outcomeAttempts) != 2 || f.outcomeAttempts[0] == f.outcomeAttempts[1] {
		t.Fatalf("batch ids sent %v; want two different ids", f.outcomeAttempts)
	}
	if got := f.outcomes[0].GetOutcomes(); len(got) != 1 || got[0].GetSuccesses() != 2 {
		t.Fatalf("batch after the refusal %v; want both successes", got)
	}
}

// A batch that could not be delivered for MaxHold is dropped; what came
// after it is still reported.
func TestHeldBatchIsDroppedAfterMaxHold(t *testing.T) {
	f, addr := startFake(t)
	p, conns := tableAndConns(t, addr, state(1, &pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{
		{Id: "a", Url: "http://a.example", Region: "us-east"}, {Id: "b", Url: "http://b.example", Region: "us-east"},
	}}))
	var now atomic.Int64
	now.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	r := New(Config{Edge: "edge-1", Region: "us-east", Table: p, Coordinators: conns, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	ctx := context.Background()
	gate(t, p.Load(), "a").Record(route.Timeout)
	f.fail.Store(true)
	if err := r.SendOutcomes(ctx); err == nil {
		t.Fatal("a failed report returned nil")
	}
	f.fail.Store(false)
	now.Add(int64(MaxHold + time.Second))
	gate(t, p.Load(), "b").Record(route.Timeout)
	if err := r.SendOutcomes(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.outcomes) != 1 || f.outcomes[0].GetOutcomes()[0].GetEndpoint() != "b" || f.outcomes[0].GetBatchId() == f.outcomeAttempts[0] {
		t.Fatalf("delivered %v; want only b's outcomes, in a new batch", f.outcomes)
	}
}

func sortOutcomes(r *pb.ReportOutcomesRequest) {
	slices.SortStableFunc(r.Outcomes, func(a, b *pb.EndpointOutcomes) int { return strings.Compare(a.Endpoint, b.Endpoint) })
}

// Run sends batches on its own, every Interval.
func TestRunReportsPeriodically(t *testing.T) {
	f, addr := startFake(t)
	r, table := newReporter(t, addr, state(1, &pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "a", Url: "http://a.example", Region: "us-east"}}}))
	r.cfg.Interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	gate(t, table.Load(), "a").Record(route.Success)
	testutil.Poll(t, "a batch", func() bool { n, _, _ := f.counts(); return n == 1 })
	gate(t, table.Load(), "a").Record(route.Success)
	testutil.Poll(t, "a second batch", func() bool { n, _, _ := f.counts(); return n == 2 })
	cancel()
	<-done
}

// A half-open endpoint: the edge asks for the lease, probes the backend's
// health check path once, and reports the result; it does not ask again
// within the lease.
func TestProbeFlow(t *testing.T) {
	f, addr := startFake(t)
	f.grant.Store(true)
	var hits atomic.Int32
	var path atomic.Value
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		path.Store(r.URL.Path)
	}))
	t.Cleanup(be.Close)
	cell := &pb.Cell{Id: "c1",
		HealthCheck: &pb.HealthCheckPolicy{HttpPath: "/ready"},
		Breaker:     &pb.BreakerPolicy{ProbeLeaseMs: 600_000},
		Endpoints:   []*pb.Endpoint{{Id: "a", Url: be.URL + "/base", Region: "us-east"}, {Id: "b", Url: "http://b.example", Region: "us-east"}},
	}
	st := state(3, cell)
	st.Breakers = []*pb.BreakerStatus{{Endpoint: "a", State: pb.BreakerState_BREAKER_STATE_HALF_OPEN, ModRevision: 3}}
	r, _ := newReporter(t, addr, st)
	ctx := context.Background()

	r.StartProbes(ctx)
	testutil.Poll(t, "the probe report", func() bool { _, _, p := f.counts(); return p == 1 })
	r.wg.Wait()
	f.mu.Lock()
	acq, rep := f.acquires, f.probes[0]
	f.mu.Unlock()
	if len(acq) != 1 || acq[0].Endpoint != "a" || acq[0].Edge != "edge-1" {
		t.Fatalf("lease requests %v, want one for a", acq)
	}
	if !rep.Ok || rep.Endpoint != "a" || rep.Detail != "HTTP 200" {
		t.Fatalf("probe report %v", rep)
	}
	if hits.Load() != 1 || path.Load() != "/base/ready" {
		t.Fatalf("backend saw %d probes, path %v", hits.Load(), path.Load())
	}

	r.StartProbes(ctx) // within the lease: nothing
	r.wg.Wait()
	if _, a, _ := f.counts(); a != 1 {
		t.Fatalf("%d lease requests within one lease period", a)
	}
}

// Not granted: no probe is sent.
func TestProbeNotGranted(t *testing.T) {
	f, addr := startFake(t)
	var hits atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(be.Close)
	st := state(3, &pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "a", Url: be.URL, Region: "us-east"}}})
	st.Breakers = []*pb.BreakerStatus{{Endpoint: "a", State: pb.BreakerState_BREAKER_STATE_HALF_OPEN, ModRevision: 3}}
	r, _ := newReporter(t, addr, st)
	r.StartProbes(context.Background())
	r.wg.Wait()
	if _, a, p := f.counts(); a != 1 || p != 0 || hits.Load() != 0 {
		t.Fatalf("acquires %d, probe reports %d, backend hits %d; want 1, 0, 0", a, p, hits.Load())
	}
}

// Reports go to the member the watch follows; when it fails, the held
// batch goes to another member at once (the next send, not after a
// backoff), with the same batch id, so it counts once wherever it lands.
func TestReportsFollowTheWatchAndMoveOnWithTheSameBatch(t *testing.T) {
	other, otherAddr := startFake(t)
	watched, watchedAddr := startFake(t)
	tb, err := route.Build("us-east", state(1, &pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "a", Url: "http://a.example", Region: "us-east"}}}))
	if err != nil {
		t.Fatal(err)
	}
	table := &atomic.Pointer[route.Table]{}
	table.Store(tb)
	pool := coordconn.New(coordconn.Config{Addrs: func() []string { return []string{otherAddr, watchedAddr} }})
	t.Cleanup(pool.Close)
	pool.Follow(watchedAddr)
	r := New(Config{Edge: "edge-1", Region: "us-east", Table: table, Coordinators: pool})
	ctx := context.Background()
	a := gate(t, tb, "a")

	a.Record(route.Success)
	if err := r.SendOutcomes(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := watched.counts(); n != 1 {
		t.Fatalf("%d batches at the watched member; want the report there", n)
	}
	watched.fail.Store(true)
	a.Record(route.Timeout)
	if err := r.SendOutcomes(ctx); status.Code(err) != codes.Unavailable {
		t.Fatalf("report to the failing member: %v", err)
	}
	if err := r.SendOutcomes(ctx); err != nil {
		t.Fatalf("resend: %v; want it delivered by the other member", err)
	}
	watched.mu.Lock()
	failedID := watched.outcomeAttempts[1]
	watched.mu.Unlock()
	other.mu.Lock()
	defer other.mu.Unlock()
	if len(other.outcomes) != 1 || other.outcomes[0].GetBatchId() != failedID {
		t.Fatalf("other member got %v; want the failed batch %d, resent as it was", other.outcomeAttempts, failedID)
	}
}
