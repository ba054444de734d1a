package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
)

// stateRaft is a one-member raft for the nonce tests: Propose applies the
// command to a real state.Store at the next index, stamped with the test's
// clock as raftstore stamps it with the leader's.
type stateRaft struct {
	member // the methods these tests do not need: calling one panics

	st *state.Store
	mu sync.Mutex
	// index is the last index applied; now the leader's clock.
	index uint64
	now   time.Time
	// nonceOps counts the CheckNoncesOps proposed.
	nonceOps int
	// gate, when set, holds the first CheckNoncesOp until it is closed,
	// after sending on entered.
	gate, entered chan struct{}
}

func (r *stateRaft) Name() string     { return "c1" }
func (r *stateRaft) IsLeader() bool   { return true }
func (r *stateRaft) View() state.View { return r.st.Freeze() }

func (r *stateRaft) Propose(ctx context.Context, cmd *pb.Command) (*pb.CommandResult, error) {
	if cmd.GetCheckNonces() != nil {
		r.mu.Lock()
		r.nonceOps++
		gate, entered := r.gate, r.entered
		r.gate = nil
		r.mu.Unlock()
		if gate != nil {
			entered <- struct{}{}
			<-gate
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	cmd.NowUnixNano = r.now.UnixNano()
	res, _ := r.st.Apply(r.index, cmd)
	return res, nil
}

func (r *stateRaft) proposed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nonceOps
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// nonceServer returns a server over a state holding the live keys k_1, k_2
// and k_3 and the revoked key k_rev, with the given quota (zero: defaults).
func nonceServer(t *testing.T, quota nonceQuota) (*Server, *stateRaft) {
	t.Helper()
	r := &stateRaft{st: state.New(), now: t0}
	for _, id := range []string{"k_1", "k_2", "k_3", "k_rev"} {
		if _, err := r.Propose(context.Background(), &pb.Command{Op: &pb.Command_CreateKey{CreateKey: &pb.CreateKeyOp{Id: id, Name: id, Secret: "s"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if res, _ := r.Propose(context.Background(), &pb.Command{Op: &pb.Command_RevokeKey{RevokeKey: &pb.RevokeKeyOp{Id: "k_rev"}}}); res.GetError() != nil {
		t.Fatal(res.GetError())
	}
	s := New(deps(r), Config{})
	s.nonces.quota = quota
	t.Cleanup(s.Close)
	return s, r
}

// checks returns n checks of key with nonces prefix0, prefix1, ..., each
// with its own check id, expiring five minutes after t0.
func checks(key, prefix string, n int) []*pb.NonceCheck {
	out := make([]*pb.NonceCheck, n)
	for i := range out {
		out[i] = &pb.NonceCheck{KeyId: key, Nonce: fmt.Sprintf("%s%d", prefix, i), CheckId: fmt.Sprintf("edge-1/boot/%s%d", prefix, i),
			ExpiresUnixMs: t0.Add(5 * time.Minute).UnixMilli()}
	}
	return out
}

func call(s *Server, cs ...*pb.NonceCheck) ([]bool, error) {
	resp, err := s.CheckNonces(context.Background(), &pb.CheckNoncesRequest{Edge: "edge-1", Checks: cs})
	return resp.GetFresh(), err
}

func countFresh(fresh []bool) int {
	n := 0
	for _, f := range fresh {
		if f {
			n++
		}
	}
	return n
}

// A call that names an unknown key or carries a malformed check is refused
// whole, with the field named, and nothing is proposed or stored.
func TestCheckNoncesRefusesBadCallsBeforeProposing(t *testing.T) {
	s, r := nonceServer(t, nonceQuota{})
	ok := checks("k_1", "ok", 1)[0]
	with := func(f func(c *pb.NonceCheck)) *pb.NonceCheck {
		c := checks("k_1", "bad", 1)[0]
		f(c)
		return c
	}
	for _, tc := range []struct {
		name   string
		checks []*pb.NonceCheck
		code   codes.Code
		want   string // in the message
	}{
		{"unknown key", []*pb.NonceCheck{ok, with(func(c *pb.NonceCheck) { c.KeyId = "k_9" })}, codes.FailedPrecondition, `checks[1].key_id: no key "k_9"`},
		{"nonce with a space", []*pb.NonceCheck{with(func(c *pb.NonceCheck) { c.Nonce = "a b" })}, codes.InvalidArgument, "checks[0].nonce"},
		{"nonce too long", []*pb.NonceCheck{ok, with(func(c *pb.NonceCheck) { c.Nonce = strings.Repeat("n", hmacsig.MaxNonceLen+1) })}, codes.InvalidArgument, "checks[1].nonce"},
		{"key id too long", []*pb.NonceCheck{with(func(c *pb.NonceCheck) { c.KeyId = strings.Repeat("k", state.MaxKeyIDLen+1) })}, codes.InvalidArgument, "checks[0].key_id"},
		{"no check id", []*pb.NonceCheck{with(func(c *pb.NonceCheck) { c.CheckId = "" })}, codes.InvalidArgument, "checks[0].check_id"},
		{"check id too long", []*pb.NonceCheck{with(func(c *pb.NonceCheck) { c.CheckId = strings.Repeat("c", state.MaxCheckIDLen+1) })}, codes.InvalidArgument, "checks[0].check_id"},
		{"too many checks", checks("k_1", "many", maxChecksPerCall+1), codes.InvalidArgument, "checks: 1025 checks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh, err := call(s, tc.checks...)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("answered %v, %v; want %v naming %q", fresh, err, tc.code, tc.want)
			}
			if r.proposed() != 0 || r.st.Freeze().Nonces() != 0 {
				t.Fatalf("%d batches proposed, %d nonces stored; want none", r.proposed(), r.st.Freeze().Nonces())
			}
		})
	}
}

// A check of a revoked key (an edge whose snapshot predates the
// revocation) is answered "not fresh" without failing the call or being
// proposed.
func TestCheckNoncesRevokedKeyIsNotFresh(t *testing.T) {
	s, r := nonceServer(t, nonceQuota{})
	fresh, err := call(s, checks("k_1", "a", 1)[0], checks("k_rev", "a", 1)[0], checks("k_2", "a", 1)[0])
	if err != nil || !slices.Equal(fresh, []bool{true, false, true}) {
		t.Fatalf("answered %v, %v; want [true false true]", fresh, err)
	}
	if r.st.Freeze().Nonces() != 2 || r.st.Freeze().KeyNonces("k_rev") != 0 {
		t.Fatalf("%d nonces stored, %d of the revoked key; want 2 and 0", r.st.Freeze().Nonces(), r.st.Freeze().KeyNonces("k_rev"))
	}
	before := r.proposed()
	if fresh, err := call(s, checks("k_rev", "b", 3)...); err != nil || !slices.Equal(fresh, []bool{false, false, false}) {
		t.Fatalf("a call of revoked checks only: %v, %v", fresh, err)
	}
	if r.proposed() != before {
		t.Fatal("a call of revoked checks only was proposed")
	}
}

// A flood past the per-key or the global quota is refused with
// RESOURCE_EXHAUSTED naming the quota, and stores nothing; retries and
// replays of stored nonces are still answered at the quota, and reaping
// makes room again.
func TestCheckNoncesFloodOverQuotaIsRefused(t *testing.T) {
	s, r := nonceServer(t, nonceQuota{perKey: 100, total: 150})
	stored := checks("k_1", "a", 100)
	retry, replay := stored[7], checks("k_1", "a", 8)[7]
	replay.CheckId = "edge-2/boot/a7"
	for _, step := range []struct {
		name    string
		checks  []*pb.NonceCheck
		subject string // of the QuotaFailure; "" for an answer
		fresh   int    // checks answered fresh
		nonces  int    // stored after the call
	}{
		{"a flood of 101 for one key", checks("k_1", "a", 101), "key:k_1", 0, 0},
		{"100 for that key", stored, "", 100, 100},
		{"one more for that key", checks("k_1", "b", 1), "key:k_1", 0, 100},
		{"a retry of a stored check", []*pb.NonceCheck{retry}, "", 1, 100},
		{"a replay", []*pb.NonceCheck{replay}, "", 0, 100},
		{"another key to the global quota", checks("k_2", "a", 50), "", 50, 150},
		{"a third key past the global quota", checks("k_3", "a", 1), "nonces", 0, 150},
	} {
		before := r.proposed()
		fresh, err := call(s, step.checks...)
		if step.subject == "" {
			if err != nil || countFresh(fresh) != step.fresh {
				t.Fatalf("%s: answered %d fresh of %d, %v; want %d fresh", step.name, countFresh(fresh), len(fresh), err, step.fresh)
			}
		} else {
			if status.Code(err) != codes.ResourceExhausted || quotaSubject(err) != step.subject {
				t.Fatalf("%s: answered %v, %v; want RESOURCE_EXHAUSTED on %q", step.name, fresh, err, step.subject)
			}
			if r.proposed() != before {
				t.Fatalf("%s: refused, but proposed", step.name)
			}
		}
		if r.st.Freeze().Nonces() != step.nonces {
			t.Fatalf("%s: %d nonces stored, want %d", step.name, r.st.Freeze().Nonces(), step.nonces)
		}
	}
	// Reaped once their windows passed: the key may store again.
	r.mu.Lock()
	r.now = t0.Add(10 * time.Minute)
	r.mu.Unlock()
	if _, err := r.Propose(context.Background(), &pb.Command{Op: &pb.Command_Tick{Tick: &pb.TickOp{}}}); err != nil {
		t.Fatal(err)
	}
	if fresh, err := call(s, checks("k_1", "c", 100)...); err != nil || countFresh(fresh) != 100 {
		t.Fatalf("after reaping: %d fresh, %v; want 100", countFresh(fresh), err)
	}
}

// The checks of a batch still being committed count against the quota: a
// call admitted meanwhile cannot take the store past it.
func TestCheckNoncesQuotaCountsBatchesInFlight(t *testing.T) {
	s, r := nonceServer(t, nonceQuota{perKey: 10, total: 10})
	gate := make(chan struct{})
	r.gate, r.entered = gate, make(chan struct{}, 1)
	first := make(chan error, 1)
	go func() {
		_, err := call(s, checks("k_1", "a", 10)...)
		first <- err
	}()
	<-r.entered // the first batch is being committed
	_, err := call(s, checks("k_2", "a", 1)...)
	if status.Code(err) != codes.ResourceExhausted || quotaSubject(err) != "nonces" {
		t.Fatalf("a call while 10 checks are in flight at a quota of 10: %v; want RESOURCE_EXHAUSTED on the store", err)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if r.st.Freeze().Nonces() != 10 {
		t.Fatalf("%d nonces stored, want 10", r.st.Freeze().Nonces())
	}
}

// Many edges flooding at once never take the store past its quota, and
// every nonce stored was answered fresh.
func TestCheckNoncesConcurrentFloodStaysWithinQuota(t *testing.T) {
	const quota = 500
	s, r := nonceServer(t, nonceQuota{total: quota})
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		fresh, refusals int
	)
	for g := range 40 {
		wg.Go(func() {
			for i := range 5 {
				f, err := call(s, checks(fmt.Sprintf("k_%d", 1+g%3), fmt.Sprintf("g%d-%d-", g, i), 10)...)
				mu.Lock()
				switch {
				case err == nil:
					fresh += countFresh(f)
				case status.Code(err) == codes.ResourceExhausted:
					refusals++
				default:
					t.Errorf("call: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n := r.st.Freeze().Nonces(); n > quota || n != fresh || refusals == 0 {
		t.Fatalf("%d nonces stored, %d answered fresh, %d calls refused; want at most %d stored, each answered fresh, and refusals", n, fresh, refusals, quota)
	}
}

// quotaSubject is the subject of err's QuotaFailure detail.
func quotaSubject(err error) string {
	for _, d := range status.Convert(err).Details() {
		if q, ok := d.(*errdetails.QuotaFailure); ok && len(q.GetViolations()) > 0 {
			return q.GetViolations()[0].GetSubject()
		}
	}
	return ""
}
