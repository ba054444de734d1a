package devcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/edgecell/edgecell/coordinator"
	"github.com/edgecell/edgecell/edgenode"
	"github.com/edgecell/edgecell/edgenode/proxy"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/simnet"
)

// Ports are the first ports of the dev cluster's port ranges: three coordinator
// gRPC ports, three raft ports, three edge HTTP ports and six backend ports, one
// after another in region order. A zero field picks free ports for that range.
type Ports struct {
	CoordinatorGRPC int
	CoordinatorRaft int
	EdgeHTTP        int
	Backend         int
}

// DefaultPorts are the ports `edgecell dev` uses: gRPC 7101-7103, raft
// 7201-7203, edges 8081-8083, backends 9001-9006.
func DefaultPorts() Ports {
	return Ports{CoordinatorGRPC: 7101, CoordinatorRaft: 7201, EdgeHTTP: 8081, Backend: 9001}
}

// Options configure Start. The zero value is a cluster on free ports in a
// temporary directory, silent, with the sample config.
type Options struct {
	// DataDir holds every member's and edge's data. Empty: a temporary directory
	// that Close removes. Given: kept, and reused by the next Start, which then
	// restarts the members from their data and leaves an existing config alone.
	DataDir string
	Ports   Ports
	// Logger receives every service's logs; nil discards them.
	Logger *slog.Logger
	// Config is applied on a cluster with no config yet. Nil: SampleConfig(Backends()).
	Config func(backends []Backend) *pb.RoutingConfig
	// EdgeDialer, when set, gives the edge in each region the dialer it reaches
	// the coordinators and the backends with. With SimulateLatency the
	// simulated delays are added on top of it.
	EdgeDialer func(region string) func(ctx context.Context, network, addr string) (net.Conn, error)
	// SimulateLatency delays every connection between two regions by the
	// routing config's latency matrix (internal/simnet): edge to coordinator,
	// coordinator to coordinator (raft and forwarding) and edge to backend.
	// The matrix follows the committed config. Raft's timeouts are scaled up
	// to the longest simulated round trip at Start.
	SimulateLatency bool
	// LatencyScale multiplies every simulated delay (0.1 keeps tests fast);
	// 0 means 1. Negative is an error.
	LatencyScale float64
	// WrapBackend, when set, wraps each demo backend's handler (to count or
	// delay requests in tests). id is the backend's endpoint id.
	WrapBackend func(id string, h http.Handler) http.Handler
	// Timeout bounds Start's waits (a leader, the config reaching every edge).
	// Default 60s.
	Timeout time.Duration
	// Insecure runs every node in plaintext, without certificates. By
	// default the cluster runs with mutual TLS (see TLSDir).
	Insecure bool
}

// Member is a coordinator of the dev cluster and where it listens.
type Member struct {
	Name, Region       string
	GRPCAddr, RaftAddr string
}

// Cluster is a running dev cluster. Its methods are safe for concurrent use.
type Cluster struct {
	opts    Options
	log     *slog.Logger
	dataDir string
	tempDir bool

	backends []Backend
	servers  map[string]*backendServer // by backend id
	edges    []*edgenode.Node
	edgeURL  map[string]string
	revision uint64

	// simnet is the simulated network; nil without SimulateLatency.
	// tls is the cluster's certificates; nil with Options.Insecure.
	tls *clusterTLS

	simnet     *simnet.Network
	latMu      sync.Mutex
	latencies  []*pb.Latency // what simnet's matrix was built from; nil: not yet
	stopFollow context.CancelFunc
	following  sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	members []Member
	coords  map[string]*coordinator.Coordinator // nil value: killed
	conns   map[string]*grpc.ClientConn
}

// Start brings the whole cluster up and returns once a leader is elected, the
// config is applied (unless one exists already) and every edge serves it. On
// error everything started so far is stopped. ctx bounds the start only; the
// cluster runs until Close.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	for attempt := 1; ; attempt++ {
		c, err := startOnce(ctx, opts)
		// Ports are picked free and bound a moment later: another process
		// (a parallel test) may take one in between. In a temporary data
		// dir nothing remembers the ports, so pick them again.
		if err != nil && opts.DataDir == "" && attempt < 3 && errors.Is(err, syscall.EADDRINUSE) {
			opts.Logger.Warn("devcluster: a port was taken before it was bound; starting again on other ports", "err", err)
			continue
		}
		return c, err
	}
}

func startOnce(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if err := validateLatency(&opts); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	c := &Cluster{
		opts: opts, log: opts.Logger, dataDir: opts.DataDir,
		edgeURL: map[string]string{}, servers: map[string]*backendServer{}, coords: map[string]*coordinator.Coordinator{}, conns: map[string]*grpc.ClientConn{},
	}
	if opts.SimulateLatency {
		c.simnet = simnet.NewNetwork(nil)
	}
	if c.dataDir == "" {
		dir, err := os.MkdirTemp("", "edgecell-dev-")
		if err != nil {
			return nil, fmt.Errorf("devcluster: %w", err)
		}
		c.dataDir, c.tempDir = dir, true
	} else if err := os.MkdirAll(c.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("devcluster: %w", err)
	}
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	if err := c.setupTLS(); err != nil {
		return err
	}
	l, reused, err := loadLayout(c.dataDir)
	if err != nil {
		return err
	}
	if !reused {
		if l, err = newLayout(c.opts.Ports); err != nil {
			return err
		}
	}
	if err := c.startBackends(l.Backends); err != nil {
		return err
	}
	// The matrix of the config about to be applied, so that raft's first
	// connections are delayed too; ensureConfig corrects it if a kept
	// config differs.
	c.setLatencies(c.configBuilder()(c.Backends()).GetLatencies())
	if err := c.startCoordinators(ctx, l.Members); err != nil {
		return err
	}
	if err := c.waitMembers(ctx); err != nil {
		return err
	}
	rev, err := c.ensureConfig(ctx)
	if err != nil {
		return err
	}
	c.revision = rev
	if err := c.startEdges(ctx, l.Edges); err != nil {
		return err
	}
	if err := c.WaitEdges(ctx, rev); err != nil {
		return err
	}
	if c.simnet != nil {
		ctx, cancel := context.WithCancel(context.Background())
		c.stopFollow = cancel
		c.following.Add(1)
		go func() {
			defer c.following.Done()
			c.followLatencies(ctx)
		}()
	}
	if c.tempDir {
		return nil
	}
	return c.layout().save(c.dataDir)
}

// layout is where the running cluster listens.
func (c *Cluster) layout() layout {
	l := layout{Members: c.Members()}
	for _, r := range Regions() {
		l.Edges = append(l.Edges, strings.TrimPrefix(c.edgeURL[r], "http://"))
	}
	for _, b := range c.backends {
		l.Backends = append(l.Backends, b.Addr)
	}
	return l
}

func (c *Cluster) startBackends(addrs []string) error {
	for i, region := range Regions() {
		for j := 1; j <= BackendsPerRegion; j++ {
			idx := i*BackendsPerRegion + j - 1
			id := region + "-" + strconv.Itoa(j)
			var h http.Handler = NewBackendHandler(id, region)
			if c.opts.WrapBackend != nil {
				h = c.opts.WrapBackend(id, h)
			}
			bs := &backendServer{handler: h}
			addr, err := bs.listen(addrs[idx])
			if err != nil {
				return fmt.Errorf("devcluster: backend %s: %w", id, err)
			}
			c.servers[id] = bs
			c.backends = append(c.backends, Backend{ID: id, Region: region, Addr: addr, URL: "http://" + addr})
			if c.simnet != nil {
				c.simnet.Register(addr, region)
			}
		}
	}
	return nil
}

func (c *Cluster) ensureConfig(ctx context.Context) (uint64, error) {
	admin, err := c.anyAdmin()
	if err != nil {
		return 0, err
	}
	var current *pb.GetConfigResponse
	err = retryUnavailable(ctx, func() (err error) {
		current, err = admin.GetConfig(ctx, &pb.GetConfigRequest{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("devcluster: read config: %w", err)
	}
	if len(current.GetConfig().GetRegions()) > 0 {
		c.log.Info("keeping the existing routing config", "revision", current.GetRevision())
		c.setLatencies(current.GetConfig().GetLatencies())
		return current.GetRevision(), nil
	}
	return c.Apply(ctx, c.configBuilder()(c.Backends()))
}

// configBuilder is Options.Config, or SampleConfig.
func (c *Cluster) configBuilder() func([]Backend) *pb.RoutingConfig {
	if c.opts.Config != nil {
		return c.opts.Config
	}
	return SampleConfig
}

func (c *Cluster) startEdges(ctx context.Context, addrs []string) error {
	members := c.Members()
	for i, region := range Regions() {
		// Own region's coordinator first; the edge prefers it anyway.
		coords := []string{members[i].GRPCAddr}
		for j, m := range members {
			if j != i {
				coords = append(coords, m.GRPCAddr)
			}
		}
		name := edgeName(region)
		cfg := edgenode.Config{
			Name: name, Region: region, DataDir: filepath.Join(c.dataDir, name),
			Listen: addrs[i], Coordinators: coords,
			Logger: c.log.With("edge", name, "region", region),
			TLS:    c.source(name),
			// A dev cluster explains its routing to anyone who asks (the
			// load test's breaker check does); a real edge does not.
			DebugHeader: proxy.DebugOn,
		}
		if c.opts.EdgeDialer != nil {
			cfg.DialContext = c.opts.EdgeDialer(region)
		}
		cfg.DialContext = c.dialer(region, cfg.DialContext)
		n, err := edgenode.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("devcluster: edge %s: %w", name, err)
		}
		if c.simnet != nil {
			c.simnet.Register(n.Addr(), region)
		}
		c.edges = append(c.edges, n)
		c.edgeURL[region] = "http://" + n.Addr()
	}
	return nil
}

// WaitEdges blocks until every edge serves revision rev or later, or ctx ends.
func (c *Cluster) WaitEdges(ctx context.Context, rev uint64) error {
	return poll(ctx, func() bool {
		for _, e := range c.edges {
			if e.Revision() < rev {
				return false
			}
		}
		return true
	}, func() error {
		var behind []string
		for i, e := range c.edges {
			if got := e.Revision(); got < rev {
				behind = append(behind, fmt.Sprintf("%s at %d", Regions()[i], got))
			}
		}
		return fmt.Errorf("devcluster: edges did not reach revision %d: %v", rev, behind)
	})
}

// Revision is the config revision every edge served when Start returned.
func (c *Cluster) Revision() uint64 { return c.revision }

// DataDir is where the members and edges keep their data.
func (c *Cluster) DataDir() string { return c.dataDir }

// Temporary reports whether Close deletes DataDir (Options.DataDir was empty).
func (c *Cluster) Temporary() bool { return c.tempDir }

// Backends are the demo backends, in region order.
func (c *Cluster) Backends() []Backend { return append([]Backend(nil), c.backends...) }

// EdgeURL is the base URL ("http://127.0.0.1:8081") of the edge in region, or ""
// when the dev cluster has no such region.
func (c *Cluster) EdgeURL(region string) string { return c.edgeURL[region] }

// Edges are the running edges, in region order.
func (c *Cluster) Edges() []*edgenode.Node { return append([]*edgenode.Node(nil), c.edges...) }

// EdgeURLs maps each region to its edge's base URL.
func (c *Cluster) EdgeURLs() map[string]string {
	out := make(map[string]string, len(c.edgeURL))
	for r, u := range c.edgeURL {
		out[r] = u
	}
	return out
}

// Members are the coordinators in order (n1, n2, n3), including killed ones.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Member(nil), c.members...)
}

// CoordinatorAddrs are the coordinators' gRPC addresses in member order.
func (c *Cluster) CoordinatorAddrs() []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.GRPCAddr)
	}
	return out
}

// Close stops the edges, the coordinators and the backends, and removes the data
// directory if Start created it. It returns the errors met, joined. Calls after
// the first do nothing.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if c.stopFollow != nil {
		c.stopFollow()
		c.following.Wait()
	}
	var errs []error
	for _, e := range c.edges {
		errs = append(errs, e.Close())
	}
	c.mu.Lock()
	for name, co := range c.coords {
		if co != nil {
			errs = append(errs, co.Close())
		}
		c.coords[name] = nil
	}
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	for _, s := range c.servers {
		errs = append(errs, s.stop())
	}
	if c.tempDir {
		errs = append(errs, os.RemoveAll(c.dataDir))
	}
	return errors.Join(errs...)
}
