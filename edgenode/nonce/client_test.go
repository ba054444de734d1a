package nonce

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func expires() int64 { return time.Now().Add(5 * time.Minute).UnixMilli() }

// Checks that arrive while an RPC is in flight go together in the next one,
// and each gets its own answer.
func TestChecksWaitingForAnRPCShareTheNext(t *testing.T) {
	co := startCoordinator(t, newStore())
	release := make(chan struct{})
	var first atomic.Bool
	co.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		if first.CompareAndSwap(false, true) {
			<-release // hold the first call until the others queued up
		}
		return &pb.CheckNoncesResponse{Fresh: co.store.check(req.GetChecks())}, nil
	})
	c := newClient(t, Config{Coordinators: coords(t, co.addr), MaxInFlight: 1, Timeout: 10 * time.Second})

	const n = 100
	fresh := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Go(func() { fresh[0], errs[0] = c.Check("k_1", []byte("n-0"), expires()) })
	testutil.Poll(t, "the first check in flight", func() bool { return len(co.received()) == 1 })
	for i := 1; i < n; i++ {
		// n-1 repeats n-0, so one of the waiting checks is a replay.
		wg.Go(func() { fresh[i], errs[i] = c.Check("k_1", fmt.Appendf(nil, "n-%d", i-1), expires()) })
	}
	testutil.Poll(t, "the other checks queued", func() bool { return c.queued() == n-1 })
	close(release)
	wg.Wait()

	calls := co.received()
	if len(calls) != 2 || len(calls[1].GetChecks()) != n-1 {
		t.Fatalf("%d calls (second with %d checks); want 2, the second carrying the %d checks that waited", len(calls), len(calls[len(calls)-1].GetChecks()), n-1)
	}
	if calls[1].GetEdge() != "edge-test" {
		t.Fatalf("call names edge %q", calls[1].GetEdge())
	}
	ids := map[string]bool{}
	for _, call := range calls {
		for _, ch := range call.GetChecks() {
			if ids[ch.GetCheckId()] || !strings.HasPrefix(ch.GetCheckId(), "edge-test/") {
				t.Fatalf("check id %q repeated or not prefixed by the edge", ch.GetCheckId())
			}
			ids[ch.GetCheckId()] = true
		}
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("check %d: %v", i, errs[i])
		}
		if want := i != 1; fresh[i] != want {
			t.Fatalf("check %d fresh=%v, want %v (only the repeat of n-0 is a replay)", i, fresh[i], want)
		}
	}
}

// A call that fails is sent again, to the other coordinator, with the same
// check ids; the answer is the second coordinator's.
func TestFailedCallIsResentWithTheSameCheckIDs(t *testing.T) {
	st := newStore()
	a, b := startCoordinator(t, st), startCoordinator(t, st)
	// a stores the nonce and then "loses" the reply, as a leader that
	// committed the entry and crashed before answering.
	a.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		st.check(req.GetChecks())
		return nil, status.Error(codes.Unavailable, "leader lost")
	})
	c := newClient(t, Config{Coordinators: coords(t, a.addr, b.addr)})
	fresh, err := c.Check("k_1", []byte("once"), expires())
	if err != nil || !fresh {
		t.Fatalf("Check = %v, %v; want fresh: the retry carries the id that stored it", fresh, err)
	}
	ca, cb := a.received(), b.received()
	if len(ca) != 1 || len(cb) != 1 {
		t.Fatalf("calls: %d to the failing coordinator, %d to the other; want 1 and 1", len(ca), len(cb))
	}
	if ida, idb := ca[0].GetChecks()[0].GetCheckId(), cb[0].GetChecks()[0].GetCheckId(); ida != idb {
		t.Fatalf("retry check id %q, first %q: want the same", idb, ida)
	}
	// The failing coordinator is tried last from now on.
	if fresh, err := c.Check("k_1", []byte("twice"), expires()); err != nil || !fresh {
		t.Fatalf("second Check = %v, %v", fresh, err)
	}
	if len(a.received()) != 1 {
		t.Fatalf("the coordinator that just failed was asked first again")
	}
}

// With no coordinator answering, Check fails within its Timeout and never
// says fresh.
func TestUnreachableCoordinatorsFailClosedInTime(t *testing.T) {
	dead := edgetest.ClosedAddr(t)
	slow := startCoordinator(t, newStore())
	slow.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		<-ctx.Done() // no quorum: the call hangs until the edge gives up
		return nil, ctx.Err()
	})
	const timeout = 500 * time.Millisecond
	c := newClient(t, Config{Coordinators: coords(t, dead, slow.addr), Timeout: timeout, AttemptTimeout: 200 * time.Millisecond})
	start := time.Now()
	fresh, err := c.Check("k_1", []byte("n"), expires())
	took := time.Since(start)
	if fresh || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check = %v, %v; want ErrUnavailable", fresh, err)
	}
	if took < timeout-50*time.Millisecond || took > timeout+time.Second {
		t.Fatalf("Check gave up after %s; want about its timeout %s", took, timeout)
	}
	if len(slow.received()) < 2 {
		t.Fatalf("the hanging coordinator got %d calls; want it retried within the timeout", len(slow.received()))
	}
	if s := c.Stats(); s.RPCErrors == 0 || s.RPCErrors != s.RPCs {
		t.Fatalf("stats %+v: every RPC failed", s)
	}
}

// A request that is refused as such (a bug on the edge) is not retried.
func TestInvalidArgumentIsNotRetried(t *testing.T) {
	co := startCoordinator(t, newStore())
	co.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		return nil, status.Error(codes.InvalidArgument, "checks[0].check_id: required")
	})
	c := newClient(t, Config{Coordinators: coords(t, co.addr)})
	if _, err := c.Check("k_1", []byte("n"), expires()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "check_id") {
		t.Fatalf("Check: %v; want ErrUnavailable naming the refusal", err)
	}
	if n := len(co.received()); n != 1 {
		t.Fatalf("%d calls; want 1", n)
	}
}

// A nonce this edge got an answer for is a replay from then on, answered
// without a call, until it expires; the same nonce with another key is not.
func TestAnsweredNoncesAreReplaysWithoutACall(t *testing.T) {
	co := startCoordinator(t, newStore())
	now := time.UnixMilli(1_700_000_000_000)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newClient(t, Config{Coordinators: coords(t, co.addr), Now: clock})
	exp := now.Add(time.Minute).UnixMilli()
	if fresh, err := c.Check("k_1", []byte("n"), exp); err != nil || !fresh {
		t.Fatalf("first Check = %v, %v", fresh, err)
	}
	if fresh, err := c.Check("k_1", []byte("n"), exp); err != nil || fresh {
		t.Fatalf("repeat Check = %v, %v; want a replay", fresh, err)
	}
	if s := c.Stats(); s.RPCs != 1 || s.CacheHits != 1 {
		t.Fatalf("stats %+v; want 1 RPC and 1 cache hit", s)
	}
	if fresh, err := c.Check("k_2", []byte("n"), exp); err != nil || !fresh {
		t.Fatalf("same nonce, other key: %v, %v; want fresh", fresh, err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	// Expired here: asked again (the coordinators still say replay).
	if fresh, err := c.Check("k_1", []byte("n"), exp); err != nil || fresh {
		t.Fatalf("after expiry: %v, %v; want the coordinators' replay", fresh, err)
	}
	if s := c.Stats(); s.RPCs != 3 {
		t.Fatalf("stats %+v; want the expired nonce asked for", s)
	}
}

func TestCacheForgetsTheOldestWhenFull(t *testing.T) {
	c := newCache(2)
	add := func(key, nonce string) {
		c.addAll([]*pb.NonceCheck{{KeyId: key, Nonce: nonce, ExpiresUnixMs: 100}}, 0)
	}
	add("a", "1")
	add("b", "2")
	add("a", "1") // answered twice: still one entry
	add("a", "3")
	if c.seen("a", []byte("1"), 0) || !c.seen("b", []byte("2"), 0) || !c.seen("a", []byte("3"), 0) {
		t.Fatal("want a/1 forgotten, b/2 and a/3 remembered")
	}
	if c.len() != 2 {
		t.Fatalf("%d entries, want 2", c.len())
	}
	if c.seen("b", []byte("2"), 100) {
		t.Fatal("an entry is remembered past its expiry")
	}
	c.addAll([]*pb.NonceCheck{{KeyId: "c", Nonce: "x", ExpiresUnixMs: 50}}, 60)
	if c.seen("c", []byte("x"), 0) {
		t.Fatal("an already expired nonce was remembered")
	}
}

func TestCloseAnswersWaitingChecks(t *testing.T) {
	co := startCoordinator(t, newStore())
	co.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	c, err := New(Config{Edge: "e", Coordinators: coords(t, co.addr), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Check("k", []byte("n"), expires()); done <- err }()
	testutil.Poll(t, "the check in flight", func() bool { return len(co.received()) == 1 })
	c.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Check during Close: %v, want ErrClosed", err)
	}
	if _, err := c.Check("k", []byte("m"), expires()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Check after Close: %v, want ErrClosed", err)
	}
}

// A member that answers NOT_LEADER naming the leader: the batch goes
// there next, at once and with the same check ids, and so do the next
// checks.
func TestNotLeaderSendsTheRetryToTheNamedLeader(t *testing.T) {
	st := newStore()
	a, b, leader := startCoordinator(t, st), startCoordinator(t, st), startCoordinator(t, st)
	a.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		return nil, notLeader(t, leader.addr)
	})
	c := newClient(t, Config{Coordinators: coords(t, a.addr, b.addr, leader.addr)})
	if fresh, err := c.Check("k_1", []byte("n1"), expires()); err != nil || !fresh {
		t.Fatalf("Check = %v, %v", fresh, err)
	}
	ca, cb, cl := a.received(), b.received(), leader.received()
	if len(ca) != 1 || len(cb) != 0 || len(cl) != 1 {
		t.Fatalf("calls: %d to the member that refused, %d to the other, %d to the named leader; want 1, 0, 1", len(ca), len(cb), len(cl))
	}
	if ida, idl := ca[0].GetChecks()[0].GetCheckId(), cl[0].GetChecks()[0].GetCheckId(); ida != idl {
		t.Fatalf("retry check id %q, first %q: want the same", idl, ida)
	}
	if fresh, err := c.Check("k_1", []byte("n2"), expires()); err != nil || !fresh {
		t.Fatalf("second Check = %v, %v", fresh, err)
	}
	if len(a.received()) != 1 || len(leader.received()) != 2 {
		t.Fatalf("second check: %d calls to the refusing member, %d to the leader; want it sent to the leader directly", len(a.received())-1, len(leader.received())-1)
	}
}

// NOT_LEADER without a hint: the retry goes to the next member at once.
func TestNotLeaderWithoutHintMovesOnAtOnce(t *testing.T) {
	st := newStore()
	a, b := startCoordinator(t, st), startCoordinator(t, st)
	a.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		return nil, notLeader(t, "")
	})
	c := newClient(t, Config{Coordinators: coords(t, a.addr, b.addr)})
	if fresh, err := c.Check("k_1", []byte("n"), expires()); err != nil || !fresh {
		t.Fatalf("Check = %v, %v", fresh, err)
	}
	if len(a.received()) != 1 || len(b.received()) != 1 {
		t.Fatalf("calls %d and %d; want 1 and 1", len(a.received()), len(b.received()))
	}
	if s := c.Stats(); s.RPCs != 2 || s.RPCErrors != 1 {
		t.Fatalf("stats %+v", s)
	}
}
