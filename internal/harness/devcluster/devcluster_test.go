package devcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// get sends GET path with a routing key to an edge and decodes the demo backend's reply.
func get(t *testing.T, edgeURL, key string) (BackendReply, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, edgeURL+"/hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Routing-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s (key %s): %v", edgeURL, key, err)
	}
	defer resp.Body.Close()
	var reply BackendReply
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
			t.Fatalf("GET %s: body: %v", edgeURL, err)
		}
	}
	return reply, resp
}

// expectEndpoint checks that the edge in region answered 200 for key from want ("<id>@<region>",
// or "@<region>" for any endpoint there).
func expectEndpoint(t *testing.T, c *Cluster, region, key, want string) {
	t.Helper()
	reply, resp := get(t, c.EdgeURL(region), key)
	served := resp.Header.Get("X-Edge-Endpoint")
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(served, want) || !strings.HasPrefix(want, "@") && served != want {
		t.Errorf("edge %s, key %s: status %d, X-Edge-Endpoint %q; want %q", region, key, resp.StatusCode, served, want)
		return
	}
	if served != reply.Endpoint+"@"+reply.Region || reply.RoutingKey != key || reply.Path != "/hello" {
		t.Errorf("edge %s, key %s: header %q but backend says %+v", region, key, served, reply)
	}
}

func TestDevClusterRoutesByRegion(t *testing.T) {
	c := startCluster(t, Options{})
	if len(c.Backends()) != 6 || len(c.CoordinatorAddrs()) != 3 || len(c.EdgeURLs()) != 3 {
		t.Fatalf("backends %v, coordinators %v, edges %v", c.Backends(), c.CoordinatorAddrs(), c.EdgeURLs())
	}
	for _, region := range Regions() {
		// cell-1 has an endpoint in every region: each edge serves it locally.
		expectEndpoint(t, c, region, "tenant-1", "@"+region)
		// No placement: the default cell, cell-1, again locally.
		expectEndpoint(t, c, region, "someone-new", "@"+region)
	}
	// cell-2 has no ap-south endpoint; eu-west is nearer to ap-south than us-east.
	expectEndpoint(t, c, "ap-south", "tenant-2", "eu-west-2@eu-west")
	expectEndpoint(t, c, "us-east", "tenant-2", "us-east-2@us-east")

	dir := c.DataDir()
	if !c.Temporary() {
		t.Error("a cluster without DataDir should use a temporary directory")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Close left the temporary data directory %s: %v", dir, err)
	}
}

func TestDevClusterSurvivesLeaderLoss(t *testing.T) {
	c := startCluster(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KillCoordinator(leader); err != nil {
		t.Fatal(err)
	}
	cfg := SampleConfig(c.Backends())
	cfg.Placements = append(cfg.Placements, &pb.Placement{Key: "tenant-9", Cell: "cell-2"})
	rev, err := c.Apply(ctx, cfg)
	if err != nil {
		t.Fatalf("apply after killing leader %s: %v", leader, err)
	}
	if err := c.WaitEdges(ctx, rev); err != nil {
		t.Fatal(err)
	}
	expectEndpoint(t, c, "us-east", "tenant-9", "@us-east")
	expectEndpoint(t, c, "ap-south", "tenant-9", "eu-west-2@eu-west")

	if err := c.RestartCoordinator(ctx, leader); err != nil {
		t.Fatal(err)
	}
	admin, err := c.Admin(leader)
	if err != nil {
		t.Fatal(err)
	}
	// The restarted member catches up from its data and the leader.
	var last uint64
	err = poll(ctx, func() bool {
		resp, err := admin.GetConfig(ctx, &pb.GetConfigRequest{Consistency: pb.Consistency_CONSISTENCY_STALE})
		last = resp.GetRevision()
		return err == nil && last >= rev
	}, func() error { return fmt.Errorf("restarted %s is at revision %d, not %d", leader, last, rev) })
	if err != nil {
		t.Fatal(err)
	}
}

func TestDevClusterKeepsDataDir(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := startCluster(t, Options{DataDir: dir})
	cfg := SampleConfig(first.Backends())
	cfg.Placements = append(cfg.Placements, &pb.Placement{Key: "kept", Cell: "cell-2"})
	rev, err := first.Apply(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.WaitEdges(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := startCluster(t, Options{DataDir: dir})
	if second.Revision() < rev {
		t.Errorf("second run serves revision %d, before the first run's %d", second.Revision(), rev)
	}
	admin, err := second.Admin("n1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := admin.GetConfig(ctx, &pb.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetConfig().GetPlacements()) != len(cfg.GetPlacements()) {
		t.Errorf("second run re-applied the sample config: %v", got.GetConfig().GetPlacements())
	}
	if second.Members()[0] != first.Members()[0] {
		t.Errorf("members moved: %v -> %v", first.Members(), second.Members())
	}
	// Same backend addresses, so the kept config still routes.
	expectEndpoint(t, second, "ap-south", "kept", "eu-west-2@eu-west")
}

// TestBreakerEventsReachEveryEdge: a breaker opened by outcome reports is a
// new revision carrying a put_breaker event; every edge must apply it (not
// reject it and fall behind) and keep serving.
func TestBreakerEventsReachEveryEdge(t *testing.T) {
	c := startCluster(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(c.CoordinatorAddrs()[0], grpc.WithTransportCredentials(c.ClientCreds("edge-us-east")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := pb.NewEdgeServiceClient(conn).ReportOutcomes(ctx, &pb.ReportOutcomesRequest{
		Edge: "edge-us-east", Region: "us-east",
		Outcomes: []*pb.EndpointOutcomes{{Endpoint: "us-east-1", ConnectErrors: 10}},
	})
	if err != nil {
		t.Fatalf("report outcomes: %v", err)
	}
	if res.GetRevision() <= c.Revision() {
		t.Fatalf("10 connect errors did not open the breaker: revision %d, was %d", res.GetRevision(), c.Revision())
	}
	if err := c.WaitEdges(ctx, res.GetRevision()); err != nil {
		t.Fatal(err)
	}
	admin, err := c.Admin(c.Members()[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	edges, err := admin.ListEdges(ctx, &pb.ListEdgesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edges.GetEdges() {
		if e.GetRejectedRevision() != 0 {
			t.Errorf("edge %s rejected revision %d: %s", e.GetName(), e.GetRejectedRevision(), e.GetRejectReason())
		}
	}
	expectEndpoint(t, c, "eu-west", "tenant-1", "@eu-west")
}
