package edgenode_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/testutil"
)

// backendLog counts what reaches one backend: traffic, and probes by the
// edge that sent them and what they were answered.
type backendLog struct {
	failing atomic.Bool // answer traffic and probes with 503

	mu       sync.Mutex
	traffic  int
	probes   []string // "<edge> <status>"
	probesOK int
}

func (l *backendLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		if l.failing.Load() {
			status = http.StatusServiceUnavailable
		}
		l.mu.Lock()
		if edge, ok := strings.CutPrefix(r.UserAgent(), "edgecell-probe/"); ok {
			l.probes = append(l.probes, fmt.Sprintf("%s %d", edge, status))
			if status == http.StatusOK {
				l.probesOK++
			}
		} else if !strings.HasPrefix(r.UserAgent(), "edgecell-check/") {
			l.traffic++
		}
		l.mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, "failing", status)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (l *backendLog) snapshot() (traffic, probesOK int, probes []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.traffic, l.probesOK, append([]string(nil), l.probes...)
}

// The fleet behaviour of one replicated breaker, across the three edges of
// a dev cluster (one per region, all routing one cell whose endpoints are
// in us-east): a backend starts failing -> every edge stops sending it
// traffic; all edges hold the same breaker status at the same revision; a
// coordinator leader failover keeps it open; the backend recovers ->
// exactly one edge's probe reaches it -> every edge routes to it again.
func TestFleetFollowsOneBreaker(t *testing.T) {
	sick := &backendLog{}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{
		WrapBackend: func(id string, h http.Handler) http.Handler {
			if id == "us-east-1" {
				return sick.wrap(h)
			}
			return h
		},
		Config: func(bs []devcluster.Backend) *pb.RoutingConfig {
			cfg := devcluster.SampleConfig(bs)
			url := map[string]string{}
			for _, b := range bs {
				url[b.ID] = b.URL
			}
			cfg.Cells = []*pb.Cell{
				{Id: "cell-us", Endpoints: []*pb.Endpoint{
					{Id: "us-east-1", Url: url["us-east-1"], Region: "us-east"},
					{Id: "us-east-2", Url: url["us-east-2"], Region: "us-east"},
				}, Breaker: &pb.BreakerPolicy{ConsecutiveFailures: 2, BaseEjectionMs: 300, MaxEjectionMs: 1000, ProbeLeaseMs: 5000}},
			}
			cfg.Placements = []*pb.Placement{{Key: "solo", Cell: "cell-us"}}
			cfg.DefaultCell = "cell-us"
			return cfg
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	send := func(region string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, c.EdgeURL(region)+"/work", nil)
		req.Header.Set("X-Routing-Key", "solo")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("via %s: %v", region, err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Edge-Endpoint")
	}
	everyEdgeReaches := func(what, endpoint string) {
		t.Helper()
		for _, region := range devcluster.Regions() {
			testutil.Poll(t, fmt.Sprintf("%s: the %s edge to be served by %s", what, region, endpoint), func() bool {
				status, ep := send(region)
				return status == 200 && ep == endpoint
			})
		}
	}
	everyEdgeReaches("before", "us-east-1@us-east")

	// The backend fails: the edges' 5xx reports open its breaker, and the
	// status reaches every edge.
	sick.failing.Store(true)
	testutil.Poll(t, "the breaker to be open at every edge", func() bool {
		for _, region := range devcluster.Regions() {
			send(region)
		}
		for _, e := range c.Edges() {
			if b, _, _ := e.EndpointStatus("us-east-1"); b.GetState() == pb.BreakerState_BREAKER_STATE_CLOSED || b == nil {
				return false
			}
		}
		return true
	})

	// From now on no edge sends it traffic (probes aside), and every
	// request is served by the other endpoint.
	before, _, _ := sick.snapshot()
	for range 30 {
		for _, region := range devcluster.Regions() {
			if status, ep := send(region); status != 200 || ep != "us-east-2@us-east" {
				t.Fatalf("via %s with us-east-1's breaker open: %d from %q", region, status, ep)
			}
		}
	}
	if after, _, _ := sick.snapshot(); after != before {
		t.Fatalf("%d requests reached us-east-1 while every edge had its breaker open", after-before)
	}
	sameStatusEverywhere(t, c, "us-east-1", func(b *pb.BreakerStatus) bool {
		return b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED
	})

	// The leader dies while the breaker is open: the new leader keeps it.
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KillCoordinator(leader); err != nil {
		t.Fatal(err)
	}
	newLeader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := c.Admin(newLeader)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := admin.ListBreakers(ctx, &pb.ListBreakersRequest{Consistency: pb.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs.GetBreakers() {
		if b.GetEndpoint() == "us-east-1" && (b.GetState() == pb.BreakerState_BREAKER_STATE_CLOSED || b.GetTrips() == 0) {
			t.Fatalf("after the leader (%s) died, new leader %s has us-east-1 %v", leader, newLeader, b)
		}
	}

	// Half-open while still failing: one edge's probe fails and reopens it.
	testutil.Poll(t, "a probe of the failing backend", func() bool {
		_, _, probes := sick.snapshot()
		return len(probes) > 0
	})

	// It recovers: one probe reaches it and closes the breaker everywhere.
	sick.failing.Store(false)
	everyEdgeReaches("after recovery", "us-east-1@us-east")
	_, ok, probes := sick.snapshot()
	if ok != 1 {
		t.Fatalf("%d probes were answered 200 (want exactly one, which closes the breaker); probes seen: %v", ok, probes)
	}
	sameStatusEverywhere(t, c, "us-east-1", func(b *pb.BreakerStatus) bool {
		return b.GetState() == pb.BreakerState_BREAKER_STATE_CLOSED
	})
}

// sameStatusEverywhere waits until every edge serves the same revision,
// then requires them to hold the same breaker status for endpoint, one
// that want accepts.
func sameStatusEverywhere(t *testing.T, c *devcluster.Cluster, endpoint string, want func(*pb.BreakerStatus) bool) {
	t.Helper()
	var last string
	testutil.Poll(t, "every edge to hold the same breaker status at the same revision", func() bool {
		edges := c.Edges()
		first, _, rev := edges[0].EndpointStatus(endpoint)
		last = fmt.Sprintf("%s at %d: %v", edges[0].Region(), rev, first)
		for _, e := range edges[1:] {
			b, _, r := e.EndpointStatus(endpoint)
			if r != rev || !proto.Equal(b, first) {
				last += fmt.Sprintf("; %s at %d: %v", e.Region(), r, b)
				return false
			}
		}
		return true
	})
	edges := c.Edges()
	b, _, rev := edges[0].EndpointStatus(endpoint)
	if !want(b) {
		t.Fatalf("every edge agrees at revision %d, on the wrong status: %v (%s)", rev, b, last)
	}
}
