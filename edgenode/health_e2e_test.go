package edgenode_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/testutil"
)

// Active health checks across the fleet: each endpoint is checked by the
// edges of its own region, or by every edge when its region has none; the
// coordinators' verdict reaches every edge, which stops routing to an
// unhealthy endpoint and explains why, and routes to it again once healthy.
func TestActiveHealthChecksAcrossTheFleet(t *testing.T) {
	// sa-east has an endpoint but no edge: all three edges check it.
	orphan := httptest.NewServer(devcluster.NewBackendHandler("sa-east-1", "sa-east"))
	t.Cleanup(orphan.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Config: func(bs []devcluster.Backend) *pb.RoutingConfig {
		cfg := devcluster.SampleConfig(bs)
		cfg.Regions = append(cfg.Regions, &pb.Region{Name: "sa-east"})
		cell := cfg.Cells[0] // cell-1: us-east-1, eu-west-1, ap-south-1, ap-south-2
		cell.Endpoints = append(cell.Endpoints, &pb.Endpoint{Id: "sa-east-1", Url: orphan.URL, Region: "sa-east"})
		cell.HealthCheck = &pb.HealthCheckPolicy{IntervalMs: 100, TimeoutMs: 100, HealthyThreshold: 1, UnhealthyThreshold: 2, StaleAfterMs: 2500}
		return cfg
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	admin, err := c.Admin("n1")
	if err != nil {
		t.Fatal(err)
	}
	report := func(endpoint string) *pb.EndpointHealthReport {
		resp, err := admin.ListHealth(ctx, &pb.ListHealthRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetEndpoints() {
			if r.GetStatus().GetEndpoint() == endpoint {
				return r
			}
		}
		return nil
	}
	// Fresh observers only: while the edges start one by one, the first
	// ones briefly see regions without edges and check them too, until
	// CheckAssignment catches up; those observations go stale.
	observers := func(r *pb.EndpointHealthReport) []string {
		var out []string
		for _, o := range r.GetObservations() {
			if !o.GetStale() {
				out = append(out, o.GetEdge())
			}
		}
		slices.Sort(out)
		return out
	}
	healthyWith := func(endpoint string, edges ...string) {
		t.Helper()
		var last *pb.EndpointHealthReport
		testutil.Eventually(t, 30*time.Second, func() error {
			last = report(endpoint)
			if last.GetStatus().GetVerdict() != pb.HealthVerdict_HEALTH_VERDICT_HEALTHY || !slices.Equal(observers(last), edges) {
				return fmt.Errorf("want %s healthy, observed by %s; have %v", endpoint, strings.Join(edges, ", "), last)
			}
			return nil
		})
	}
	healthyWith("us-east-1", "edge-us-east")
	healthyWith("ap-south-2", "edge-ap-south")
	healthyWith("sa-east-1", "edge-ap-south", "edge-eu-west", "edge-us-east")

	route := func() (string, string) {
		req, _ := http.NewRequest(http.MethodGet, c.EdgeURL("us-east")+"/", nil)
		req.Header.Set("X-Routing-Key", "tenant-1")
		req.Header.Set("X-Edge-Debug", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Edge-Endpoint"), resp.Header.Get("X-Edge-Route")
	}
	if ep, _ := route(); ep != "us-east-1@us-east" {
		t.Fatalf("healthy: served by %s, want the own region's us-east-1", ep)
	}

	// us-east-1's health check fails: the verdict turns, every edge learns it,
	// and the us-east edge fails over to eu-west, saying why.
	if err := c.SetBackendHealthy("us-east-1", false); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, "every edge to hold us-east-1 unhealthy", func() bool {
		for _, e := range c.Edges() {
			if _, h, _ := e.EndpointStatus("us-east-1"); h.GetVerdict() != pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY {
				return false
			}
		}
		return true
	})
	// The us-east edge's observation says what it saw. (Observations of
	// edges that checked us-east-1 only while starting may still be listed,
	// stale.)
	r := report("us-east-1")
	var seen *pb.HealthObservation
	for _, o := range r.GetObservations() {
		if o.GetEdge() == "edge-us-east" {
			seen = o
		}
	}
	if seen.GetVerdict() != pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY || seen.GetDetail() != "HTTP 503" || r.GetStatus().GetSinceUnixMs() == 0 {
		t.Fatalf("unhealthy report: %v", r)
	}
	if ep, why := route(); ep != "eu-west-1@eu-west" || why != "failover us-east->eu-west: 1 endpoint unhealthy" {
		t.Fatalf("with us-east-1 unhealthy: served by %s, X-Edge-Route %q", ep, why)
	}

	if err := c.SetBackendHealthy("us-east-1", true); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, "the us-east edge to route to us-east-1 again", func() bool {
		ep, _ := route()
		return ep == "us-east-1@us-east"
	})
}
