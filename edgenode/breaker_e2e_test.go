package edgenode_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/testutil"
)

// End to end with real coordinators: an endpoint that refuses connections
// is tripped locally at once, its outcome reports open the replicated
// breaker, which reaches the edge; once the endpoint is back, a probe closes
// the breaker and the edge routes to it again.
func TestBreakerEndToEnd(t *testing.T) {
	dead := edgetest.ClosedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Config: func(bs []devcluster.Backend) *pb.RoutingConfig {
		cfg := devcluster.SampleConfig(bs)
		for _, cell := range cfg.GetCells() {
			for _, e := range cell.GetEndpoints() {
				if e.GetId() == "us-east-1" {
					e.Url = "http://" + dead
					cell.Breaker = &pb.BreakerPolicy{ConsecutiveFailures: 2, BaseEjectionMs: 300, ProbeLeaseMs: 500}
				}
			}
		}
		return cfg
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	route := func() (status int, endpoint, why string) {
		req, _ := http.NewRequest(http.MethodGet, c.EdgeURL("us-east")+"/hello", nil)
		req.Header.Set("X-Routing-Key", "tenant-1")
		req.Header.Set("X-Edge-Debug", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Edge-Endpoint"), resp.Header.Get("X-Edge-Route")
	}
	// Every request is served, by another region once us-east-1 refuses.
	sawGlobal := false
	testutil.Poll(t, "the replicated breaker to reach the edge", func() bool {
		status, ep, why := route()
		if status != 200 || ep == "us-east-1@us-east" {
			t.Fatalf("status %d from %s (%s)", status, ep, why)
		}
		sawGlobal = why == "failover us-east->eu-west: 1 endpoint breaker-open" || why == "failover us-east->eu-west: 1 endpoint breaker-half-open"
		return sawGlobal
	})

	// The backend comes back on the same address: a probe closes the breaker.
	ln, err := net.Listen("tcp", dead)
	if err != nil {
		t.Fatalf("listening again on %s: %v", dead, err)
	}
	srv := &http.Server{Handler: devcluster.NewBackendHandler("us-east-1", "us-east")}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	testutil.Poll(t, "us-east-1 to serve again after its probe", func() bool {
		status, ep, _ := route()
		return status == 200 && ep == "us-east-1@us-east"
	})
}
