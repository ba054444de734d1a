package watch

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeCoordinator is a real gRPC EdgeService whose Watch streams are driven by the test.
type fakeCoordinator struct {
	pb.UnimplementedEdgeServiceServer
	addr    string
	watches chan *watchCall
	mu      sync.Mutex
	acks    []*pb.AckRequest
}

type watchCall struct {
	req  *pb.WatchRequest
	send chan *pb.WatchResponse
	end  chan error
}

func startCoordinator(t *testing.T) *fakeCoordinator {
	t.Helper()
	f := &fakeCoordinator{watches: make(chan *watchCall, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	s := grpc.NewServer()
	pb.RegisterEdgeServiceServer(s, f)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return f
}

func (f *fakeCoordinator) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.WatchResponse]) error {
	call := &watchCall{req: req, send: make(chan *pb.WatchResponse), end: make(chan error, 1)}
	f.watches <- call
	for {
		select {
		case m := <-call.send:
			if err := stream.Send(m); err != nil {
				return err
			}
		case err := <-call.end:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (f *fakeCoordinator) Ack(_ context.Context, req *pb.AckRequest) (*pb.AckResponse, error) {
	f.mu.Lock()
	f.acks = append(f.acks, req)
	f.mu.Unlock()
	return &pb.AckResponse{}, nil
}

// nextWatch waits for the edge to open a stream.
func (f *fakeCoordinator) nextWatch(t *testing.T) *watchCall {
	t.Helper()
	select {
	case w := <-f.watches:
		return w
	case <-time.After(10 * time.Second):
		t.Fatalf("no Watch call on %s", f.addr)
		return nil
	}
}

func (w *watchCall) push(t *testing.T, m *pb.WatchResponse) {
	t.Helper()
	select {
	case w.send <- m:
	case <-time.After(10 * time.Second):
		t.Fatal("stream not accepting messages")
	}
}

// waitAck polls for an ack matching pred.
func (f *fakeCoordinator) waitAck(t *testing.T, what string, pred func(*pb.AckRequest) bool) *pb.AckRequest {
	t.Helper()
	var found *pb.AckRequest
	poll(t, what, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, a := range f.acks {
			if pred(a) {
				found = a
				return true
			}
		}
		return false
	})
	return found
}

func poll(t *testing.T, what string, cond func() bool) { t.Helper(); testutil.Poll(t, what, cond) }

type recordingPersister struct {
	mu  sync.Mutex
	log []string
}

func (p *recordingPersister) Reset(st *pb.State) { p.add("reset", st.GetRevision()) }
func (p *recordingPersister) Append(chs ...*pb.Change) {
	for _, c := range chs {
		p.add("change", c.GetRevision())
	}
}
func (p *recordingPersister) Advance(rev uint64) { p.add("progress", rev) }
func (p *recordingPersister) add(kind string, rev uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, kind+":"+itoa(rev))
}
func (p *recordingPersister) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, " ")
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

type edge struct {
	table   *atomic.Pointer[route.Table]
	client  *Client
	persist *recordingPersister
}

func startEdge(t *testing.T, region string, seeds []string, tweak func(*Config)) *edge {
	t.Helper()
	e := &edge{table: &atomic.Pointer[route.Table]{}, persist: &recordingPersister{}}
	e.table.Store(route.Empty(region))
	cfg := Config{Edge: "edge-1", Region: region, Seeds: seeds, Table: e.table, Persister: e.persist,
		BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	})
	return e
}

func (e *edge) waitRevision(t *testing.T, rev uint64) {
	t.Helper()
	poll(t, "table revision "+itoa(rev), func() bool { return e.table.Load().Revision() == rev })
}

func state(rev uint64, members ...*pb.Member) *pb.State {
	return &pb.State{Revision: rev, Members: members, Config: &pb.RoutingConfig{
		Cells:      []*pb.Cell{{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "e1", Url: "http://127.0.0.1:1", Region: "us-east"}}}},
		Placements: []*pb.Placement{{Key: "a", Cell: "c1"}},
	}}
}

func reset(st *pb.State) *pb.WatchResponse {
	return &pb.WatchResponse{Kind: &pb.WatchResponse_Reset_{Reset_: st}}
}
func changes(chs ...*pb.Change) *pb.WatchResponse {
	return &pb.WatchResponse{Kind: &pb.WatchResponse_Changes{Changes: &pb.ChangeBatch{Changes: chs}}}
}
func progress(rev uint64) *pb.WatchResponse {
	return &pb.WatchResponse{Kind: &pb.WatchResponse_ProgressRevision{ProgressRevision: rev}}
}
func place(rev uint64, key, cell string) *pb.Change {
	return &pb.Change{Revision: rev, Events: []*pb.Event{{Kind: &pb.Event_PutPlacement{PutPlacement: &pb.Placement{Key: key, Cell: cell}}}}}
}

func acked(rev uint64) func(*pb.AckRequest) bool {
	return func(a *pb.AckRequest) bool { return a.AppliedRevision == rev && a.RejectedRevision == 0 }
}

func TestResetChangesProgressAreAppliedAckedAndPersisted(t *testing.T) {
	co := startCoordinator(t)
	e := startEdge(t, "us-east", []string{co.addr}, nil)
	w := co.nextWatch(t)
	if w.req.GetFromRevision() != 0 || w.req.GetEdge() != "edge-1" || w.req.GetRegion() != "us-east" {
		t.Fatalf("first Watch request %v", w.req)
	}
	w.push(t, reset(state(10)))
	e.waitRevision(t, 10)
	if a := co.waitAck(t, "ack 10", acked(10)); a.GetEdge() != "edge-1" || a.GetRegion() != "us-east" {
		t.Fatalf("ack %v", a)
	}
	if e.client.Connected() != co.addr {
		t.Fatalf("Connected() = %q, want %q", e.client.Connected(), co.addr)
	}

	w.push(t, changes(place(11, "b", "c1"), place(12, "c", "c1")))
	e.waitRevision(t, 12)
	for _, k := range []string{"a", "b", "c"} {
		if e.table.Load().LookupString(k) == nil {
			t.Fatalf("key %s not routed after changes", k)
		}
	}
	co.waitAck(t, "ack 12", acked(12))

	w.push(t, progress(15))
	e.waitRevision(t, 15)
	co.waitAck(t, "ack 15", acked(15))
	poll(t, "persisted history", func() bool { return e.persist.String() == "reset:10 change:11 change:12 progress:15" })
}

// TestIdleProgressIsAckedForLiveness: a progress message at the revision the
// edge already holds changes nothing, but the edge still acks it, so that an
// idle edge's last ack stays recent for operators.
func TestIdleProgressIsAckedForLiveness(t *testing.T) {
	co := startCoordinator(t)
	e := startEdge(t, "us-east", []string{co.addr}, nil)
	w := co.nextWatch(t)
	w.push(t, reset(state(10)))
	e.waitRevision(t, 10)
	co.waitAck(t, "ack 10", acked(10))
	count := func() int {
		co.mu.Lock()
		defer co.mu.Unlock()
		n := 0
		for _, a := range co.acks {
			if acked(10)(a) {
				n++
			}
		}
		return n
	}
	before := count()
	w.push(t, progress(10))
	poll(t, "a second ack of revision 10", func() bool { return count() > before })
	if got := e.table.Load().Revision(); got != 10 {
		t.Fatalf("idle progress moved the edge to revision %d", got)
	}
}

func TestReconnectResumesFromServedRevision(t *testing.T) {
	co := startCoordinator(t)
	e := startEdge(t, "us-east", []string{co.addr}, nil)
	w := co.nextWatch(t)
	w.push(t, reset(state(10)))
	w.push(t, changes(place(11, "b", "c1")))
	e.waitRevision(t, 11)

	w.end <- errors.New("coordinator restarting")
	w2 := co.nextWatch(t)
	if got := w2.req.GetFromRevision(); got != 11 {
		t.Fatalf("resumed from %d, want 11", got)
	}
	if e.table.Load().LookupString("b") == nil {
		t.Fatal("state lost across the reconnect")
	}
	// Changes the edge already has are skipped; new ones apply.
	w2.push(t, changes(place(11, "b", "c1"), place(12, "z", "c1")))
	e.waitRevision(t, 12)
	// A coordinator behind the edge may send an older reset: it is ignored.
	w2.push(t, reset(state(5)))
	w2.push(t, progress(13))
	e.waitRevision(t, 13)
	if e.table.Load().LookupString("z") == nil {
		t.Fatal("older reset replaced a newer state")
	}
}

func TestBadChangeIsRejectedAndStreamResumedFromLastGood(t *testing.T) {
	co := startCoordinator(t)
	e := startEdge(t, "us-east", []string{co.addr}, nil)
	w := co.nextWatch(t)
	w.push(t, reset(state(10)))
	w.push(t, changes(place(11, "b", "c1"), place(12, "bad", "no-such-cell"), place(13, "c", "c1")))
	a := co.waitAck(t, "reject of 12", func(a *pb.AckRequest) bool { return a.RejectedRevision == 12 })
	if a.AppliedRevision != 11 || !strings.Contains(a.RejectReason, "no-such-cell") {
		t.Fatalf("reject ack %v: want applied 11 and a reason naming the cell", a)
	}
	w2 := co.nextWatch(t)
	if got := w2.req.GetFromRevision(); got != 11 {
		t.Fatalf("resumed from %d after reject, want 11", got)
	}
	tb := e.table.Load()
	if tb.Revision() != 11 || tb.LookupString("b") == nil || tb.LookupString("c") != nil || tb.LookupString("bad") != nil {
		t.Fatalf("table after reject: revision %d", tb.Revision())
	}
}

func TestMovesToCoordinatorInOwnRegion(t *testing.T) {
	far := startCoordinator(t)  // eu-west, the only seed
	near := startCoordinator(t) // us-east, learnt from the members
	e := startEdge(t, "us-east", []string{far.addr}, func(c *Config) { c.RebalanceInterval = 20 * time.Millisecond })
	w := far.nextWatch(t)
	w.push(t, reset(state(10,
		&pb.Member{Name: "far", Region: "eu-west", GrpcAddr: far.addr},
		&pb.Member{Name: "near", Region: "us-east", GrpcAddr: near.addr})))
	e.waitRevision(t, 10)
	// Progress keeps the far stream alive until the rebalance check moves the edge.
	go func() {
		tick := time.NewTicker(5 * time.Millisecond) // a stream's progress rate, not a synchronisation
		defer tick.Stop()
		for rev := uint64(11); ; rev++ {
			select {
			case w.send <- progress(rev):
			case <-w.end:
				return
			case <-time.After(10 * time.Second):
				return
			}
			select {
			case <-tick.C:
			case <-w.end:
				return
			}
		}
	}()
	w2 := near.nextWatch(t)
	if w2.req.GetFromRevision() < 10 {
		t.Fatalf("moved with from_revision %d", w2.req.GetFromRevision())
	}
	w2.push(t, progress(w2.req.GetFromRevision()+1))
	poll(t, "connected to the near coordinator", func() bool { return e.client.Connected() == near.addr })
}

func TestFirstSessionFromSeedsMovesHomeAtOnce(t *testing.T) {
	far := startCoordinator(t)  // eu-west, the only seed
	near := startCoordinator(t) // us-east, learnt from the first reset
	// No periodic rebalance within the test: the move must come from
	// learning the members while connected blindly through a seed.
	e := startEdge(t, "us-east", []string{far.addr}, func(c *Config) { c.RebalanceInterval = time.Hour })
	w := far.nextWatch(t)
	w.push(t, reset(state(10,
		&pb.Member{Name: "far", Region: "eu-west", GrpcAddr: far.addr},
		&pb.Member{Name: "near", Region: "us-east", GrpcAddr: near.addr})))
	w2 := near.nextWatch(t)
	if w2.req.GetFromRevision() != 10 {
		t.Fatalf("moved with from_revision %d, want 10", w2.req.GetFromRevision())
	}
	w2.push(t, progress(10))
	poll(t, "connected to the near coordinator", func() bool { return e.client.Connected() == near.addr })
}

func TestSilentStreamIsDropped(t *testing.T) {
	co := startCoordinator(t)
	e := startEdge(t, "us-east", []string{co.addr}, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	w := co.nextWatch(t)
	w.push(t, reset(state(10)))
	e.waitRevision(t, 10)
	w2 := co.nextWatch(t) // no progress: the edge gives up on the stream and comes back
	if w2.req.GetFromRevision() != 10 {
		t.Fatalf("resumed from %d, want 10", w2.req.GetFromRevision())
	}
}

func TestUnreachableCoordinatorsKeepServingAndRetry(t *testing.T) {
	dead := edgetest.ClosedAddr(t)
	var dials atomic.Int32
	e := startEdge(t, "us-east", []string{dead}, func(c *Config) {
		c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == dead {
				dials.Add(1)
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	})
	poll(t, "several attempts on the dead seed", func() bool { return dials.Load() >= 3 })
	if e.table.Load().Revision() != 0 {
		t.Fatal("table changed without a coordinator")
	}
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	for n := 1; n < 20; n++ {
		d := backoff(n, 100*time.Millisecond, 3*time.Second)
		if d <= 0 || d > 3*time.Second {
			t.Fatalf("attempt %d: %v", n, d)
		}
	}
	distinct := map[time.Duration]bool{}
	for range 20 {
		distinct[backoff(5, 100*time.Millisecond, 3*time.Second)] = true
	}
	if len(distinct) < 5 {
		t.Fatalf("backoff not jittered: %v", distinct)
	}
}

// A member that dies under the stream is not the next one: the edge moves
// to another at once and resumes from the revision it serves.
func TestFailoverToAnotherMemberResumes(t *testing.T) {
	a, b := startCoordinator(t), startCoordinator(t)
	pool := pairPool(t, a, b)
	e := startEdge(t, "us-east", nil, func(c *Config) { c.Pool = pool })
	w := a.nextWatch(t)
	w.push(t, reset(state(10)))
	e.waitRevision(t, 10)
	poll(t, "following a", func() bool { return pool.Following() == a.addr })
	w.end <- status.Error(codes.Unavailable, "member shutting down")
	w2 := b.nextWatch(t)
	if got := w2.req.GetFromRevision(); got != 10 {
		t.Fatalf("resumed on the other member from %d, want 10", got)
	}
	w2.push(t, progress(11))
	poll(t, "following b", func() bool { return e.client.Connected() == b.addr && pool.Following() == b.addr })
}

// What another caller learnt steers the stream: a member whose calls
// failed lately is not the first one streamed from.
func TestAMemberOtherCallsSawFailIsNotStreamedFrom(t *testing.T) {
	a, b := startCoordinator(t), startCoordinator(t)
	pool := pairPool(t, a, b)
	pool.Failed(a.addr, status.Error(codes.DeadlineExceeded, "nonce check timed out"))
	e := startEdge(t, "us-east", nil, func(c *Config) { c.Pool = pool })
	w := b.nextWatch(t)
	w.push(t, reset(state(10)))
	e.waitRevision(t, 10)
	select {
	case <-a.watches:
		t.Fatal("streamed from the member that had just failed")
	default:
	}
}

// pairPool is a pool preferring a, then b, on a stopped clock: a penalty
// lasts the whole test.
func pairPool(t *testing.T, a, b *fakeCoordinator) *coordconn.Pool {
	stopped := time.Now()
	pool := coordconn.New(coordconn.Config{Addrs: func() []string { return []string{a.addr, b.addr} }, Now: func() time.Time { return stopped }})
	t.Cleanup(pool.Close)
	return pool
}

// resetParts cuts a state of placements keys into parts of two placements.
func resetParts(rev uint64, keys ...string) []*pb.WatchResponse {
	first := state(rev)
	first.Config.Placements = nil
	var parts []*pb.WatchResponse
	for i := 0; i < len(keys); i += 2 {
		st := &pb.State{Config: &pb.RoutingConfig{}}
		if i == 0 {
			st = first
		}
		for _, k := range keys[i:min(i+2, len(keys))] {
			st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: k, Cell: "c1"})
		}
		parts = append(parts, &pb.WatchResponse{Kind: &pb.WatchResponse_ResetPart{ResetPart: &pb.ResetPart{State: st, Index: uint32(len(parts))}}})
	}
	parts[len(parts)-1].GetResetPart().Last = true
	return parts
}

// TestResetInParts: the edge asks for resets in parts and applies one only
// at its last part, as a whole; a stream that breaks in the middle leaves
// the table as it was, and the next stream's reset starts over.
func TestResetInParts(t *testing.T) {
	co := startCoordinator(t)
	e := startEdge(t, "us-east", []string{co.addr}, nil)
	w := co.nextWatch(t)
	if !w.req.GetResetInParts() {
		t.Fatalf("Watch request %v does not ask for resets in parts", w.req)
	}
	w.push(t, reset(state(10)))
	e.waitRevision(t, 10)

	parts := resetParts(20, "p1", "p2", "p3", "p4", "p5")
	for _, p := range parts[:len(parts)-1] {
		w.push(t, p)
	}
	w.end <- errors.New("coordinator gone") // in the middle of the reset
	w = co.nextWatch(t)
	if got := w.req.GetFromRevision(); got != 10 || e.table.Load().Revision() != 10 || e.table.Load().LookupString("p1") != nil {
		t.Fatalf("after a broken reset: resumed from %d, table at %d", got, e.table.Load().Revision())
	}

	w.push(t, parts[1]) // a part out of order: the stream is dropped
	w = co.nextWatch(t)
	for _, p := range parts {
		w.push(t, p)
	}
	e.waitRevision(t, 20)
	for _, k := range []string{"p1", "p2", "p3", "p4", "p5"} {
		if e.table.Load().LookupString(k) == nil {
			t.Errorf("key %s not routed after the reset", k)
		}
	}
	if e.table.Load().LookupString("a") != nil {
		t.Error("key a of the old state still routed")
	}
	co.waitAck(t, "ack 20", acked(20))
}
