package coordconn

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/apierror"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clock is a settable fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fixed is a pool choosing among addrs in that order of preference, on clk.
func fixed(t *testing.T, clk *clock, addrs ...string) *Pool {
	p := New(Config{Addrs: func() []string { return addrs }, Now: clk.Now})
	t.Cleanup(p.Close)
	return p
}

func pick(t *testing.T, p *Pool, r Route, tried ...string) string {
	t.Helper()
	c, ok := p.Pick(r, tried)
	if !ok {
		return ""
	}
	return c.Addr
}

var errDown = status.Error(codes.Unavailable, "connection refused")

func notLeader(leader string) error {
	st, err := status.New(codes.Unavailable, "not the leader").WithDetails(&errdetails.ErrorInfo{
		Domain: apierror.Domain, Reason: apierror.NotLeader, Metadata: map[string]string{apierror.MetaLeader: leader},
	})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestPreferenceOrderPutsOwnRegionFirstAndSpreadsEdges(t *testing.T) {
	members := []*pb.Member{
		{Name: "a", Region: "eu-west", GrpcAddr: "a:1"},
		{Name: "b", Region: "us-east", GrpcAddr: "b:1"},
		{Name: "c", Region: "us-east", GrpcAddr: "c:1"},
	}
	seen := map[string]bool{}
	for _, edge := range []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"} {
		cs := order(edge, "us-east", members, []string{"seed:1", "a:1"})
		if len(cs) != 4 || !cs[0].Local || !cs[1].Local || cs[2].Local || cs[3].Local {
			t.Fatalf("edge %s: %v", edge, cs)
		}
		seen[cs[0].Addr] = true
	}
	if !seen["b:1"] || !seen["c:1"] {
		t.Fatalf("edges do not spread over the local coordinators: first choices %v", seen)
	}
	if cs := order("e1", "us-east", nil, []string{"s:1", "s:2"}); len(cs) != 2 || !cs[0].Blind || !cs[1].Blind {
		t.Fatalf("seeds alone: %v; want both blind", cs)
	}
}

// Every route: a member that failed is tried last, at once, for a while
// that grows; one that answers is back.
func TestAFailedMemberIsLastForEveryRouteUntilItAnswers(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	p := fixed(t, clk, "a", "b", "c")
	for _, r := range []Route{Nearest, Followed, Leader} {
		if got := pick(t, p, r); got != "a" {
			t.Fatalf("route %d: %q, want a (first in order)", r, got)
		}
	}
	p.Failed("a", errDown)
	for _, r := range []Route{Nearest, Followed, Leader} {
		if got := pick(t, p, r); got != "b" {
			t.Fatalf("route %d after a failed: %q, want b", r, got)
		}
	}
	if got := pick(t, p, Nearest, "b", "c"); got != "a" {
		t.Fatalf("only a untried: %q, want it tried anyway", got)
	}
	if got := pick(t, p, Nearest, "a", "b", "c"); got != "" {
		t.Fatalf("all tried: %q", got)
	}
	clk.Add(penaltyBase)
	if got := pick(t, p, Nearest); got != "a" {
		t.Fatalf("penalty over: %q, want a again", got)
	}
	// A second failure in a row: twice as long.
	p.Failed("a", errDown)
	clk.Add(penaltyBase)
	if got := pick(t, p, Nearest); got != "b" {
		t.Fatalf("second failure, %s later: %q, want b", penaltyBase, got)
	}
	// Both a and b failed: the one due back first leads.
	p.Failed("b", errDown)
	if got := pick(t, p, Nearest, "c"); got != "a" {
		t.Fatalf("a and b penalised, c tried: %q, want a (due back first)", got)
	}
	p.Answered("a", Nearest, time.Millisecond)
	p.Answered("b", Nearest, time.Millisecond)
	if got := pick(t, p, Nearest); got != "a" {
		t.Fatalf("after answers: %q, want a", got)
	}
}

// A refusal of the request, or the caller's own cancellation, says nothing
// about the member.
func TestRefusalsAndCancellationsDoNotPenalise(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	p := fixed(t, clk, "a", "b")
	for _, err := range []error{
		status.Error(codes.InvalidArgument, "checks[0].check_id: required"),
		status.Error(codes.NotFound, "endpoint x"),
		status.Error(codes.ResourceExhausted, "quota"),
		status.Error(codes.Canceled, "context canceled"),
		fmt.Errorf("watch: %w", context.Canceled),
		ErrClosed,
	} {
		p.Failed("a", err)
		if got := pick(t, p, Followed); got != "a" {
			t.Fatalf("after %v: %q, want a still first", err, got)
		}
	}
	for _, err := range []error{
		status.Error(codes.DeadlineExceeded, "deadline"),
		fmt.Errorf("coordinator a: %w", errDown),
		fmt.Errorf("watch: stream idle"),
	} {
		p.Answered("a", Followed, 0)
		p.Failed("a", err)
		if got := pick(t, p, Followed); got != "b" {
			t.Fatalf("after %v: %q, want b", err, got)
		}
	}
}

func TestFollowedCallsPreferTheWatchedMember(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	p := fixed(t, clk, "a", "b", "c")
	p.Follow("c")
	if got := pick(t, p, Followed); got != "c" {
		t.Fatalf("Followed: %q, want c (the watched member)", got)
	}
	if got := pick(t, p, Nearest); got != "a" {
		t.Fatalf("Nearest: %q, want a (no affinity)", got)
	}
	if got := pick(t, p, Followed, "c"); got != "a" {
		t.Fatalf("watched member tried: %q, want a", got)
	}
	p.Failed("c", errDown)
	if got := pick(t, p, Followed); got != "a" {
		t.Fatalf("watched member failed: %q, want a", got)
	}
	p.Follow("")
	p.Answered("c", Followed, 0)
	if got := pick(t, p, Followed); got != "a" {
		t.Fatalf("no stream: %q, want a", got)
	}
}

// The nonce client's old rule, now the Leader route: the fastest first,
// each unmeasured one tried, failed ones last, every 64th pick exploring.
func TestLeaderCallsPreferTheFastestAndTryFailedOnesLast(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	p := fixed(t, clk, "a", "b", "c")
	// Never measured: in the given order.
	if got := pick(t, p, Leader); got != "a" {
		t.Fatalf("first choice %q, want a", got)
	}
	p.Answered("a", Leader, 30*time.Millisecond)
	if got := pick(t, p, Leader); got != "b" {
		t.Fatalf("want the unmeasured b tried, got %q", got)
	}
	p.Answered("b", Leader, 10*time.Millisecond)
	p.Answered("c", Leader, 20*time.Millisecond)
	if got := pick(t, p, Leader); got != "b" {
		t.Fatalf("want the fastest, b; got %q", got)
	}
	if got := pick(t, p, Leader, "b"); got != "c" {
		t.Fatalf("b tried: want c; got %q", got)
	}
	p.Failed("b", errDown)
	if got := pick(t, p, Leader); got != "c" {
		t.Fatalf("b failed: want c; got %q", got)
	}
	if got := pick(t, p, Leader, "a", "c"); got != "b" {
		t.Fatalf("only b left: want it tried anyway; got %q", got)
	}
	clk.Add(time.Second)
	if got := pick(t, p, Leader); got != "b" {
		t.Fatalf("b's penalty over: want b again; got %q", got)
	}
	if got := pick(t, p, Leader, "a", "b", "c"); got != "" {
		t.Fatalf("all tried: got %q", got)
	}
	// Every exploreEvery-th choice goes to the one used least recently.
	explored := map[string]int{}
	clk.Add(time.Minute)
	for range 2 * exploreEvery {
		clk.Add(time.Nanosecond)
		explored[pick(t, p, Leader)]++
	}
	if explored["b"] != 2*exploreEvery-2 || explored["a"]+explored["c"] != 2 {
		t.Fatalf("choices %v; want b but for two explorations", explored)
	}
}

// A NOT_LEADER answer moves Leader and Followed calls off the member at
// once (not the watch), and the leader it names gets the Leader calls.
func TestNotLeaderNamesWhereLeaderCallsGo(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	members := []*pb.Member{
		{Name: "n1", Region: "us-east", GrpcAddr: "a:1"},
		{Name: "n2", Region: "eu-west", GrpcAddr: "b:1"},
		{Name: "n3", Region: "ap-south", GrpcAddr: "c:1"},
	}
	p := New(Config{Edge: "e", Region: "us-east", Members: func() []*pb.Member { return members }, Now: clk.Now})
	t.Cleanup(p.Close)
	if got := pick(t, p, Leader); got != "a:1" {
		t.Fatalf("first Leader pick %q, want a:1 (own region)", got)
	}
	p.Failed("a:1", notLeader("n3"))
	if p.Leader() != "c:1" {
		t.Fatalf("leader %q after NOT_LEADER naming n3; want c:1", p.Leader())
	}
	if got := pick(t, p, Leader); got != "c:1" {
		t.Fatalf("Leader pick %q, want c:1, the named leader", got)
	}
	p.Answered("b:1", Leader, time.Microsecond) // faster, but not the leader
	if got := pick(t, p, Leader); got != "c:1" {
		t.Fatalf("Leader pick %q, want the named leader over the fastest", got)
	}
	if got := pick(t, p, Followed); got == "a:1" {
		t.Fatal("Followed call sent to the member that just answered NOT_LEADER")
	}
	if got := pick(t, p, Nearest); got != "a:1" {
		t.Fatalf("Nearest pick %q: the watch should still prefer a:1 (a follower streams fine)", got)
	}
	// The named leader fails: the hint is dropped, and the fastest leads.
	p.Failed("c:1", errDown)
	if p.Leader() != "" {
		t.Fatalf("leader %q kept after it failed", p.Leader())
	}
	if got := pick(t, p, Leader); got != "b:1" {
		t.Fatalf("Leader pick %q, want b:1 (a and c penalised)", got)
	}
	// A hint by gRPC address works too; one naming nobody known is ignored.
	p.Failed("b:1", notLeader("a:1"))
	if p.Leader() != "a:1" {
		t.Fatalf("leader %q, want a:1 (named by address)", p.Leader())
	}
	if got := pick(t, p, Leader); got != "a:1" {
		t.Fatalf("Leader pick %q, want a:1: named the leader, its own NOT_LEADER is forgotten", got)
	}
	p.Failed("a:1", notLeader("n9"))
	if p.Leader() != "" {
		t.Fatalf("leader %q after a hint naming no member", p.Leader())
	}
}

func TestNotLeaderIsRecognisedByErrorInfoOnly(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    error
		ok     bool
		leader string
	}{
		{"typed, with hint", notLeader("n2"), true, "n2"},
		{"typed, wrapped", fmt.Errorf("coordinator x: %w", notLeader("")), true, ""},
		{"message only", status.Error(codes.Unavailable, "raftstore: not leader (NOT_LEADER)"), false, ""},
		{"other domain", mustDetail(&errdetails.ErrorInfo{Domain: "example.com", Reason: apierror.NotLeader}), false, ""},
		{"other reason", mustDetail(&errdetails.ErrorInfo{Domain: apierror.Domain, Reason: "QUOTA"}), false, ""},
		{"plain error", fmt.Errorf("not leader"), false, ""},
		{"nil", nil, false, ""},
	} {
		leader, ok := NotLeader(c.err)
		if ok != c.ok || leader != c.leader {
			t.Errorf("%s: NotLeader = %q, %v; want %q, %v", c.name, leader, ok, c.leader, c.ok)
		}
	}
}

func mustDetail(info *errdetails.ErrorInfo) error {
	st, err := status.New(codes.Unavailable, "x").WithDetails(info)
	if err != nil {
		panic(err)
	}
	return st.Err()
}
