package devcluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/coordinator"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/simnet"
)

// matrixFollowInterval is how often a simulating cluster checks whether the
// routing config's latency matrix changed by other means than Apply (an
// admin's `edgecell apply`).
const matrixFollowInterval = time.Second

// validateLatency checks the latency options and fills in the default scale.
func validateLatency(opts *Options) error {
	s := opts.LatencyScale
	if s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return fmt.Errorf("devcluster: Options.LatencyScale %v: want a finite number >= 0 (0 means 1)", s)
	}
	if opts.SimulateLatency && s == 0 {
		opts.LatencyScale = 1
	}
	return nil
}

// setLatencies makes the simulated network follow latencies; a cluster
// without latency simulation ignores it.
func (c *Cluster) setLatencies(latencies []*pb.Latency) {
	if c.simnet == nil {
		return
	}
	c.latMu.Lock()
	defer c.latMu.Unlock()
	if c.latencies != nil && equalLatencies(c.latencies, latencies) {
		return
	}
	m, err := simnet.NewMatrix(latencies, c.opts.LatencyScale)
	if err != nil {
		c.log.Error("latency simulation: bad matrix", "error", err) // the scale was validated by Start
		return
	}
	// A copy: the caller may reuse its config.
	c.latencies = make([]*pb.Latency, len(latencies))
	for i, l := range latencies {
		c.latencies[i] = proto.CloneOf(l)
	}
	c.simnet.SetMatrix(m)
	c.log.Info("latency simulation follows the routing config", "pairs", len(latencies), "scale", c.opts.LatencyScale)
}

func equalLatencies(a, b []*pb.Latency) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// followLatencies keeps the simulated matrix equal to the committed config's,
// whoever changed it, until ctx ends.
func (c *Cluster) followLatencies(ctx context.Context) {
	t := time.NewTicker(matrixFollowInterval)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		co := c.anyCoordinator()
		if co == nil || co.Revision() == seen {
			continue
		}
		v, err := co.View(ctx, pb.Consistency_CONSISTENCY_STALE)
		if err != nil {
			continue
		}
		cfg, rev := v.Config(), v.Revision()
		seen = rev
		if len(cfg.GetRegions()) > 0 {
			c.setLatencies(cfg.GetLatencies())
		}
	}
}

// anyCoordinator is the first running coordinator, or nil.
func (c *Cluster) anyCoordinator() *coordinator.Coordinator {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if co := c.coords[m.Name]; co != nil {
			return co
		}
	}
	return nil
}

// simulatedRaft scales raft's timeouts to the simulated distances: the
// defaults suit loopback, and a leader whose quorum is a long round trip away
// must not lose its lease between two heartbeats (raftstore's advice for a
// WAN). Without simulation it leaves raft's defaults.
func (c *Cluster) simulatedRaft() coordinator.RaftTuning {
	if c.simnet == nil {
		return coordinator.RaftTuning{}
	}
	rtt := 2 * c.simnet.Matrix().Max()
	return coordinator.RaftTuning{
		HeartbeatTimeout:   max(500*time.Millisecond, 4*rtt),
		ElectionTimeout:    max(500*time.Millisecond, 4*rtt),
		LeaderLeaseTimeout: max(250*time.Millisecond, 2*rtt),
	}
}

// dialer is what a node of region dials with: EdgeDialer's (for edges, when
// set) under the simulated network's delays (when simulating).
func (c *Cluster) dialer(region string, base simnet.DialFunc) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.simnet == nil {
		return base
	}
	return c.simnet.Dialer(region, base)
}

// fixedAddr turns a port-0 address into a free port picked now when latency
// is simulated: the network must know where a member listens before its peers
// dial it, or their first, long-lived connections would escape the delays.
func (c *Cluster) fixedAddr(addr string) (string, error) {
	if c.simnet == nil || !strings.HasSuffix(addr, ":0") {
		return addr, nil
	}
	return freeLoopbackAddr()
}

// Network is the simulated network when Options.SimulateLatency is on, nil
// otherwise. Every member, edge and backend address is registered in it with
// its region, so a client of some region (a load-test client) dials edges
// through Network().Dialer(region, nil) to pay the distance too.
func (c *Cluster) Network() *simnet.Network { return c.simnet }

// ErrNoSimulation is returned by the partition controls of a cluster started
// without Options.SimulateLatency: only the simulated network can cut links.
var ErrNoSimulation = errors.New("devcluster: partitions need latency simulation (Options.SimulateLatency, --simulate-latency)")

// PartitionRegion cuts region off from the other regions (simnet's
// Network.Partition): its coordinator, edge and backends keep talking among
// themselves, and every link to another region fails until HealPartitions.
// It returns how many open connections it cut.
func (c *Cluster) PartitionRegion(region string) (int, error) {
	if c.simnet == nil {
		return 0, ErrNoSimulation
	}
	if !slices.Contains(Regions(), region) {
		return 0, fmt.Errorf("devcluster: partition %q: no such region (regions: %s)", region, strings.Join(Regions(), ", "))
	}
	cut := c.simnet.Partition(region)
	c.log.Info("latency simulation: region partitioned", "region", region, "connections_cut", cut)
	return cut, nil
}

// HealPartitions ends every partition PartitionRegion made.
func (c *Cluster) HealPartitions() error {
	if c.simnet == nil {
		return ErrNoSimulation
	}
	c.simnet.Heal()
	c.log.Info("latency simulation: partitions healed")
	return nil
}
