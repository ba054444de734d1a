package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/testutil"
)

// TestBreakerAndHealthVerbsAgainstARealCluster: an operator sees a breaker
// that edges' reports opened, with its reason, and closes it by hand.
func TestBreakerAndHealthVerbsAgainstARealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Config: func(bs []devcluster.Backend) *pb.RoutingConfig {
		cfg := devcluster.SampleConfig(bs)
		cfg.Cells[1].HealthCheck = &pb.HealthCheckPolicy{IntervalMs: 100, TimeoutMs: 100, HealthyThreshold: 1}
		return cfg
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	addr := c.CoordinatorAddrs()[1] // a follower or the leader: either must work
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c.ClientCreds("edge-us-east")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewEdgeServiceClient(conn).ReportOutcomes(ctx, &pb.ReportOutcomesRequest{
		Edge: "edge-us-east", Region: "us-east",
		Outcomes: []*pb.EndpointOutcomes{{Endpoint: "us-east-1", ConnectErrors: 10}},
	}); err != nil {
		t.Fatalf("report outcomes: %v", err)
	}

	table := devCLI(t, c, addr, "", "breakers")
	if table.code != 0 {
		t.Fatalf("breakers: %+v", table)
	}
	line := lineWith(table.out, "us-east-1")
	if !strings.Contains(line, "open") || !strings.Contains(line, "connect errors") || !strings.Contains(line, "in ") {
		t.Fatalf("breakers should show us-east-1 open, ejected, and why:\n%s", table.out)
	}

	reset := devCLI(t, c, addr, "", "breaker", "reset", "us-east-1")
	if reset.code != 0 || !strings.Contains(reset.out, "revision") {
		t.Fatalf("breaker reset: %+v", reset)
	}
	if after := lineWith(devCLI(t, c, addr, "", "breakers").out, "us-east-1"); !strings.Contains(after, "closed") || strings.Contains(after, "in ") {
		t.Fatalf("after reset the breaker should show closed and no ejection: %q", after)
	}
	js := devCLI(t, c, addr, "", "breakers", "-o", "json")
	got := &pb.ListBreakersResponse{}
	if err := protojson.Unmarshal([]byte(js.out), got); err != nil {
		t.Fatalf("breakers -o json (%v):\n%s", err, js.out)
	}
	for _, b := range got.GetBreakers() {
		if b.GetEndpoint() == "us-east-1" && b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED {
			t.Fatalf("after reset: %v", b)
		}
	}
	if bad := devCLI(t, c, addr, "", "breaker", "reset", "no-such-endpoint"); bad.code != 1 || !strings.Contains(bad.err, "no-such-endpoint") {
		t.Fatalf("resetting an unknown endpoint: %+v", bad)
	}

	// cell-2 (us-east-2, eu-west-2) has active health checks: each endpoint
	// is shown healthy, with the one edge of its region as observer.
	testutil.Eventually(t, 30*time.Second, func() error {
		h := devCLI(t, c, addr, "", "health")
		if h.code != 0 || !strings.HasPrefix(h.out, "ENDPOINT") {
			t.Fatalf("health: %+v", h)
		}
		for _, want := range []string{"us-east-2", "eu-west-2"} {
			if line := lineWith(h.out, want+" "); !strings.Contains(line, "healthy") {
				return fmt.Errorf("%s not shown healthy yet:\n%s", want, h.out)
			}
		}
		for _, want := range []string{"edge-us-east@us-east", "edge-eu-west@eu-west"} {
			if line := lineWith(h.out, want); !strings.Contains(line, "healthy") || !strings.Contains(line, "passed: HTTP 200") {
				return fmt.Errorf("no healthy observation by %s:\n%s", want, h.out)
			}
		}
		return nil
	})
}

func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
