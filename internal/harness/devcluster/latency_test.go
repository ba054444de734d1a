package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

// farConfig is the sample config with cell-2 served by us-east-2 only: the
// ap-south edge must cross to us-east for its keys (tenant-2, acme).
func farConfig(backends []Backend) *pb.RoutingConfig {
	cfg := SampleConfig(backends)
	for _, cell := range cfg.Cells {
		if cell.GetId() == "cell-2" {
			cell.Endpoints = cell.Endpoints[:1]
		}
	}
	return cfg
}

// fastest is the shortest of n timed calls of f: the floor the simulation
// imposes, without the noise a loaded machine adds to single samples.
func fastest(t *testing.T, n int, f func() error) time.Duration {
	t.Helper()
	best := time.Hour
	for range n {
		start := time.Now()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

func oneWay(t *testing.T, c *Cluster, from, to string) time.Duration {
	t.Helper()
	d, _ := c.Network().Matrix().OneWay(from, to)
	if from != to && d == 0 {
		t.Fatalf("the simulated matrix has no delay from %s to %s", from, to)
	}
	return d
}

func TestSimulatedLatency(t *testing.T) {
	const scale = 0.1
	c := startCluster(t, Options{SimulateLatency: true, LatencyScale: scale, Config: farConfig})
	if got := c.Network().Matrix().Scale(); got != scale {
		t.Fatalf("matrix scale %v, want %v", got, scale)
	}

	t.Run("edge to upstream", func(t *testing.T) {
		edge := c.EdgeURL("ap-south")
		request := func(key, wantRegion string) func() error {
			return func() error {
				req, _ := http.NewRequest(http.MethodGet, edge+"/hello", nil)
				req.Header.Set("X-Routing-Key", key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if got := resp.Header.Get("X-Edge-Endpoint"); resp.StatusCode != http.StatusOK || !strings.HasSuffix(got, "@"+wantRegion) {
					return fmt.Errorf("key %s through the ap-south edge: status %d from %q", key, resp.StatusCode, got)
				}
				return nil
			}
		}
		near := fastest(t, 10, request("tenant-1", "ap-south"))
		far := fastest(t, 10, request("tenant-2", "us-east"))
		rtt := 2 * oneWay(t, c, "ap-south", "us-east") // 19ms at scale 0.1
		t.Logf("ap-south edge: local backend %v, us-east backend %v (simulated round trip %v)", near, far, rtt)
		if far < rtt {
			t.Errorf("a request crossing from ap-south to us-east took %v, less than the simulated round trip %v", far, rtt)
		}
		if far-near < rtt*3/4 {
			t.Errorf("crossing to us-east cost %v more than staying in ap-south, want about %v", far-near, rtt)
		}
	})

	t.Run("raft and forwarding", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		leader, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		region := map[string]string{}
		for _, m := range c.Members() {
			region[m.Name] = m.Region
		}
		// A commit needs the nearest follower's acknowledgement.
		quorum := time.Hour
		for name, r := range region {
			if name != leader {
				quorum = min(quorum, 2*oneWay(t, c, region[leader], r))
			}
		}
		i := 0
		write := func(member string) func() error {
			return func() error {
				admin, err := c.Admin(member)
				if err != nil {
					return err
				}
				i++
				_, err = admin.PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: fmt.Sprintf("latency-%d", i), Cell: "cell-1"}})
				return err
			}
		}
		atLeader := fastest(t, 5, write(leader))
		t.Logf("write at leader %s (%s): %v (nearest quorum round trip %v)", leader, region[leader], atLeader, quorum)
		if atLeader < quorum {
			t.Errorf("a write at the leader committed in %v, faster than a round trip to its nearest follower (%v): raft is not delayed", atLeader, quorum)
		}
		for name, r := range region {
			if name == leader {
				continue
			}
			want := 2*oneWay(t, c, r, region[leader]) + quorum
			got := fastest(t, 5, write(name))
			t.Logf("write through follower %s (%s): %v (forward round trip plus quorum %v)", name, r, got, want)
			if got < want {
				t.Errorf("a write through %s (%s) took %v, less than forwarding to %s (%s) and committing (%v): forwarding is not delayed", name, r, got, leader, region[leader], want)
			}
		}
	})
}

func TestSimulatedLatencyFollowsApply(t *testing.T) {
	c := startCluster(t, Options{SimulateLatency: true, LatencyScale: 0.1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := SampleConfig(c.Backends())
	cfg.Latencies[0].OneWayMs = 200 // us-east <-> eu-west
	if _, err := c.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.Network().Matrix().OneWay("eu-west", "us-east"); d != 20*time.Millisecond {
		t.Fatalf("after Apply the simulated eu-west -> us-east delay is %v, want 20ms (200ms at scale 0.1)", d)
	}

	// A config applied through the admin API, as `edgecell apply` does, is
	// followed too.
	admin, err := c.Admin("n1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Latencies[0].OneWayMs = 300
	if _, err := admin.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if d, _ := c.Network().Matrix().OneWay("us-east", "eu-west"); d != 30*time.Millisecond {
			return fmt.Errorf("simulated us-east -> eu-west delay %v, want 30ms after the admin API applied 300ms", d)
		}
		return nil
	})
}

func TestLatencyScaleMustBePositive(t *testing.T) {
	_, err := Start(context.Background(), Options{SimulateLatency: true, LatencyScale: -1})
	if err == nil {
		t.Fatal("Start with LatencyScale -1 succeeded")
	}
}

// TestPartitionRegion: with ap-south cut off, its edge still serves keys
// whose backends are local and fails those that need us-east, the other
// regions keep a quorum and commit writes, and healing restores the route.
func TestPartitionRegion(t *testing.T) {
	c := startCluster(t, Options{SimulateLatency: true, LatencyScale: 0.1, Config: farConfig})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	status := func(region, key string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.EdgeURL(region)+"/hello", nil)
		req.Header.Set("X-Routing-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	want := func(region, key string, ok bool) func() error {
		return func() error {
			code, err := status(region, key)
			if err != nil {
				return err
			}
			if (code == http.StatusOK) != ok {
				return fmt.Errorf("key %s at the %s edge: status %d, want success %v", key, region, code, ok)
			}
			return nil
		}
	}

	if _, err := c.PartitionRegion("mars"); err == nil || !strings.Contains(err.Error(), "mars") {
		t.Errorf("PartitionRegion(mars): %v, want an error naming it", err)
	}
	if _, err := c.PartitionRegion("ap-south"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, want("ap-south", "tenant-2", false))
	for range 10 {
		if err := want("ap-south", "tenant-1", true)(); err != nil {
			t.Fatalf("local key during the partition: %v", err)
		}
		if err := want("us-east", "tenant-1", true)(); err != nil {
			t.Fatalf("another region during the partition: %v", err)
		}
	}
	admin, err := c.Admin("n1")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		_, err := admin.PutPlacement(wctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: "partition-write", Cell: "cell-1"}})
		return err
	})

	if err := c.HealPartitions(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, want("ap-south", "tenant-2", true))
}

func TestPartitionNeedsSimulation(t *testing.T) {
	c := &Cluster{}
	if _, err := c.PartitionRegion("ap-south"); !errors.Is(err, ErrNoSimulation) {
		t.Errorf("PartitionRegion without simulation: %v, want ErrNoSimulation", err)
	}
	if err := c.HealPartitions(); !errors.Is(err, ErrNoSimulation) {
		t.Errorf("HealPartitions without simulation: %v, want ErrNoSimulation", err)
	}
}
