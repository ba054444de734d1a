package coordinator_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/coordinator"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

// fakeClock is the coordinators' shared clock, moved only by the test, so
// that an ejection cannot end while the test is still checking it is open.
type fakeClock struct{ n atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.n.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.n.Add(int64(d)) }

// breakerEverywhere waits until every running member holds the same status
// for endpoint, in state want, and returns it.
func (tc *testCluster) breakerEverywhere(endpoint string, want pb.BreakerState) *pb.BreakerStatus {
	tc.t.Helper()
	var agreed *pb.BreakerStatus
	testutil.Eventually(tc.t, 15*time.Second, func() error {
		agreed = nil
		for name, c := range tc.members {
			v := stale(tc.t, c)
			bs, rev := v.Breakers(), v.Revision()
			var got *pb.BreakerStatus
			for _, b := range bs {
				if b.GetEndpoint() == endpoint {
					got = b
				}
			}
			if got.GetState() != want {
				return fmt.Errorf("%s at revision %d: %s is %v, want %v", name, rev, endpoint, got.GetState(), want)
			}
			if agreed != nil && !proto.Equal(agreed, got) {
				return fmt.Errorf("members disagree on %s: %v vs %v", endpoint, agreed, got)
			}
			agreed = got
		}
		return nil
	})
	return agreed
}

// TestBreakerIsReplicatedAndSurvivesFailover follows one endpoint through
// the whole breaker cycle on a three-member cluster, with edges talking to
// followers and the leader alike.
func TestBreakerIsReplicatedAndSurvivesFailover(t *testing.T) {
	clock := &fakeClock{}
	clock.n.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	tc := newClockedCluster(t, 3, coordinator.RaftTuning{}, clock.Now)
	ctx := ctxT(t)
	cfg := sampleConfig()
	cfg.Cells[0].Breaker = &pb.BreakerPolicy{ConsecutiveFailures: 3, BaseEjectionMs: 1000, ProbeLeaseMs: 60000}
	if _, err := tc.admin(tc.follower()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: cfg}); err != nil {
		t.Fatalf("apply: %v", err)
	}

	// Three edges, each through a different member, each see a connect error.
	for name := range tc.members {
		_, err := tc.edge(name, "edge-via-"+name, "us-east").ReportOutcomes(ctx, &pb.ReportOutcomesRequest{
			Edge: "edge-via-" + name, Region: "us-east", Outcomes: []*pb.EndpointOutcomes{{Endpoint: "a-use", ConnectErrors: 1}},
		})
		if err != nil {
			t.Fatalf("report via %s: %v", name, err)
		}
	}
	open := tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_OPEN)
	if open.GetModRevision() == 0 || open.GetTrips() != 1 {
		t.Fatalf("open breaker %v: want trip 1 with a revision", open)
	}
	if _, err := tc.edge(tc.follower(), "e1", "us-east").ReportOutcomes(ctx, &pb.ReportOutcomesRequest{
		Edge: "e1", Region: "us-east", Outcomes: []*pb.EndpointOutcomes{{Endpoint: "no-such-endpoint", ConnectErrors: 1}},
	}); err == nil {
		t.Fatal("a report on an unknown endpoint was accepted")
	}

	// The leader dies while the breaker is open: it stays open, unchanged.
	tc.stop(tc.waitLeader())
	tc.waitLeader()
	if still := tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_OPEN); !proto.Equal(still, open) {
		t.Fatalf("after failover %v, before %v", still, open)
	}

	// The ejection ends by the clock: the new leader's ticker half-opens it.
	clock.Advance(1500 * time.Millisecond)
	half := tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_HALF_OPEN)
	if half.GetModRevision() <= open.GetModRevision() {
		t.Fatalf("half-open at revision %d, opened at %d", half.GetModRevision(), open.GetModRevision())
	}

	// Two edges race for the probe lease: exactly one gets it.
	var members []string
	for name := range tc.members {
		members = append(members, name)
	}
	granted := make([]bool, 2)
	var wg sync.WaitGroup
	for i := range granted {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := tc.edge(members[i%len(members)], fmt.Sprintf("prober-%d", i), "us-east").AcquireProbe(ctx, &pb.AcquireProbeRequest{Edge: fmt.Sprintf("prober-%d", i), Endpoint: "a-use"})
			if err != nil {
				t.Errorf("acquire probe %d: %v", i, err)
				return
			}
			granted[i] = r.GetGranted()
		}()
	}
	wg.Wait()
	if granted[0] == granted[1] {
		t.Fatalf("probe lease granted %v: want exactly one", granted)
	}
	holder := "prober-0"
	if granted[1] {
		holder = "prober-1"
	}
	if h := tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_HALF_OPEN).GetProbeHolder(); h != holder {
		t.Fatalf("probe holder %q, granted to %q", h, holder)
	}
	if _, err := tc.edge(members[0], holder, "us-east").ReportProbe(ctx, &pb.ReportProbeRequest{Edge: holder, Endpoint: "a-use", Ok: true, Detail: "HTTP 200"}); err != nil {
		t.Fatalf("report probe: %v", err)
	}
	tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_CLOSED)

	// Open it again; an operator resets it through a follower.
	if _, err := tc.edge(members[0], "e1", "us-east").ReportOutcomes(ctx, &pb.ReportOutcomesRequest{
		Edge: "e1", Region: "us-east", Outcomes: []*pb.EndpointOutcomes{{Endpoint: "a-use", Timeouts: 3}},
	}); err != nil {
		t.Fatal(err)
	}
	tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_OPEN)
	if _, err := tc.admin(tc.follower()).ResetBreaker(ctx, &pb.ResetBreakerRequest{Endpoint: "a-use"}); err != nil {
		t.Fatalf("reset via follower: %v", err)
	}
	reset := tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_CLOSED)
	if reset.GetTrips() != 0 {
		t.Fatalf("after reset %v: want trips forgotten", reset)
	}
	list, err := tc.admin(tc.follower()).ListBreakers(ctx, &pb.ListBreakersRequest{})
	if err != nil || len(list.GetBreakers()) != 2 || !proto.Equal(list.GetBreakers()[1], reset) {
		t.Fatalf("ListBreakers: %v %v; want both endpoints, a-use as reset", list, err)
	}
}

// TestRetriedReportCountsOnce sends one outcome batch twice through the
// real API, as an edge does after a timeout (the first try may have
// committed), to a follower and then to the leader: the breaker counts it
// once. With 5 consecutive failures to open, 3 failures reported twice
// leave it closed, and two more open it.
func TestRetriedReportCountsOnce(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	cfg := sampleConfig()
	cfg.Cells[0].Breaker = &pb.BreakerPolicy{ConsecutiveFailures: 5, BaseEjectionMs: 60000, ProbeLeaseMs: 60000}
	if _, err := tc.admin(tc.waitLeader()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: cfg}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	report := func(via string, id uint64, failures uint32) uint64 {
		t.Helper()
		resp, err := tc.edge(via, "edge-1", "us-east").ReportOutcomes(ctx, &pb.ReportOutcomesRequest{
			Edge: "edge-1", Region: "us-east", BatchId: id,
			Outcomes: []*pb.EndpointOutcomes{{Endpoint: "a-use", ConnectErrors: failures}},
		})
		if err != nil {
			t.Fatalf("report batch %d via %s: %v", id, via, err)
		}
		return resp.GetRevision()
	}
	rev := report(tc.follower(), 0xfeed, 3)
	if again := report(tc.waitLeader(), 0xfeed, 3); again != rev {
		t.Fatalf("the retried batch moved the revision %d -> %d: it changed a breaker", rev, again)
	}
	// Counted twice, this would be the 7th failure; counted once, the 4th.
	if next := report(tc.follower(), 0xbeef, 1); next != rev {
		t.Fatalf("the 4th failure moved the revision %d -> %d: the retry was counted", rev, next)
	}
	tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_CLOSED)
	if opened := report(tc.follower(), 0xcafe, 1); opened <= rev {
		t.Fatalf("the 5th failure left the revision at %d: the breaker did not open", opened)
	}
	if open := tc.breakerEverywhere("a-use", pb.BreakerState_BREAKER_STATE_OPEN); open.GetTrips() != 1 {
		t.Fatalf("open breaker %v; want trip 1", open)
	}
}
