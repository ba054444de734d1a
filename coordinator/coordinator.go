// Package coordinator runs one member of the coordinator cluster. It wires
// the pieces: it builds the replicated state (coordinator/state) and the
// watch hub (coordinator/watch), opens the raft store (coordinator/raftstore)
// over them, and serves the gRPC services (coordinator/server) on one
// listener over the raft store and the hub. Members learn each other's gRPC
// addresses from the replicated state: each member records its own once a
// leader is known.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	"github.com/edgecell/edgecell/coordinator/server"
	"github.com/edgecell/edgecell/coordinator/state"
	"github.com/edgecell/edgecell/coordinator/watch"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// Config configures one coordinator member.
type Config struct {
	Name     string
	Region   string
	DataDir  string
	GRPCAddr string // listen address for the gRPC API; port 0 picks one
	RaftAddr string // listen and advertised address for raft; port 0 picks one
	// InitialCluster (name -> raft address) bootstraps a new cluster. Leave it
	// empty on a restart (state exists) or for a member that will be added
	// with AddMember.
	InitialCluster map[string]string
	Logger         *slog.Logger
	// Raft tunes raft timings and the watch buffer; zero values take defaults.
	Raft RaftTuning
	// Now is the clock the leader stamps commands with and compares breaker
	// and health deadlines to; nil means time.Now.
	Now func() time.Time
	// TickPoll is how often the leader checks those deadlines; 0 means
	// DefaultTickPoll.
	TickPoll time.Duration
	// Dial, when set, opens every connection to other members: raft's and
	// the gRPC forwarding to the leader. Latency simulation injects one
	// (internal/simnet); nil dials plain TCP.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS is this member's coordinator certificate and the cluster CA: the
	// gRPC API takes only callers with certificates from that CA and
	// authorizes each call by role, and raft connections are mutual TLS
	// between coordinators. Nil runs plaintext and unauthenticated
	// (--insecure), which Start logs as a warning.
	TLS *pki.Source
}

// RaftTuning carries the raft and watch knobs a deployment may need to change.
type RaftTuning struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	SnapshotInterval   time.Duration
	Watch              watch.Options
}

// Coordinator is a running member.
type Coordinator struct {
	cfg    Config
	log    *slog.Logger
	store  *raftstore.Store
	srv    *server.Server
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// ParseInitialCluster parses etcd-style "n1=host:port,n2=host:port".
func ParseInitialCluster(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("initial cluster entry %q: want name=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("initial cluster entry %q: raft address: %w", part, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("initial cluster names %q twice", name)
		}
		out[name] = addr
	}
	return out, nil
}

// Start opens the raft store, starts serving gRPC and returns. It does not
// wait for a leader.
func Start(ctx context.Context, cfg Config) (*Coordinator, error) {
	if cfg.Name == "" || cfg.DataDir == "" || cfg.GRPCAddr == "" || cfg.RaftAddr == "" {
		return nil, errors.New("coordinator: name, data dir, gRPC address and raft address are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger.With("member", cfg.Name)
	if err := checkIdentity(cfg); err != nil {
		return nil, err
	}
	if cfg.TLS == nil {
		log.Warn("running WITHOUT TLS (--insecure): anyone who can reach the gRPC and raft ports can read key secrets and change the cluster")
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("coordinator: listen on gRPC address %q: %w", cfg.GRPCAddr, err)
	}
	// The state machine and the fan-out are built here and handed to the
	// raft store (Consul's Deps), which owns raft and nothing else.
	st := state.New()
	hub := watch.NewHub(cfg.Raft.Watch, func() *pb.State { return st.Freeze().State() }, st.Freeze().Revision())
	store, err := raftstore.Open(raftstore.Config{
		Name: cfg.Name, RaftAddr: cfg.RaftAddr, DataDir: cfg.DataDir, Bootstrap: cfg.InitialCluster,
		Logger:           cfg.Logger,
		HeartbeatTimeout: cfg.Raft.HeartbeatTimeout, ElectionTimeout: cfg.Raft.ElectionTimeout,
		LeaderLeaseTimeout: cfg.Raft.LeaderLeaseTimeout, CommitTimeout: cfg.Raft.CommitTimeout,
		SnapshotThreshold: cfg.Raft.SnapshotThreshold, TrailingLogs: cfg.Raft.TrailingLogs,
		SnapshotInterval: cfg.Raft.SnapshotInterval,
		Now:              cfg.Now, Dial: cfg.Dial, TLS: cfg.TLS,
	}, st, hub)
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	srv := server.New(server.Deps{Proposer: store, Reader: store, Members: store, Watches: hub}, server.Config{Region: cfg.Region, GRPCAddr: lis.Addr().String(), Logger: log, Now: cfg.Now, Dial: cfg.Dial, TLS: cfg.TLS})
	gs, hs := srv.NewGRPCServer()
	runCtx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{cfg: cfg, log: log, store: store, srv: srv, grpc: gs, health: hs, lis: lis, cancel: cancel}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING) // before watchHalt can turn it off
	c.wg.Add(4)
	go func() {
		defer c.wg.Done()
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("gRPC server stopped", "error", err)
		}
	}()
	go func() {
		defer c.wg.Done()
		c.registerSelf(runCtx)
	}()
	go func() {
		defer c.wg.Done()
		c.runTicker(runCtx)
	}()
	go func() {
		defer c.wg.Done()
		c.watchHalt(runCtx)
	}()
	log.Info("coordinator started", "region", cfg.Region, "grpc_addr", lis.Addr().String(), "raft_addr", store.RaftAddr())
	return c, nil
}

// registerSelf makes sure the replicated state holds this member's region,
// gRPC address and the ops its binary applies, so peers can forward to it,
// edges can find it and the leader knows which ops it may propose. It retries
// with jittered backoff until done (no leader yet, or not yet a member), and
// again whenever the record disappears or changes (a restore, a rejoin).
func (c *Coordinator) registerSelf(ctx context.Context) {
	want := &pb.Member{Name: c.cfg.Name, Region: c.cfg.Region, RaftAddr: c.store.RaftAddr(), GrpcAddr: c.lis.Addr().String(), Ops: state.Ops()}
	backoff := 50 * time.Millisecond
	for {
		registered := false
		if got, ok := c.store.View().Member(c.cfg.Name); ok && proto.Equal(got, want) {
			registered = true
		} else if c.isVoter() {
			if c.proposeMember(ctx, want) == nil {
				registered = true
				c.log.Info("registered member address", "grpc_addr", want.GrpcAddr)
			}
		}
		wait := backoff
		if registered {
			wait, backoff = 2*time.Second, 50*time.Millisecond
		} else {
			backoff = min(backoff*2, 2*time.Second)
		}
		wait = wait/2 + rand.N(wait/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// watchHalt turns the health service to NOT_SERVING once the state machine
// halts (the gRPC services already refuse every call): load balancers and
// probes take the member out until it runs a binary that can apply the log.
func (c *Coordinator) watchHalt(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-c.store.HaltNotify():
		c.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		c.log.Error("not serving: this member's binary cannot apply the log; upgrade it and restart", "error", c.store.Halted())
	}
}

func (c *Coordinator) isVoter() bool {
	servers, err := c.store.Servers()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if s.Name == c.cfg.Name {
			return true
		}
	}
	return false
}

func (c *Coordinator) proposeMember(ctx context.Context, m *pb.Member) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.srv.RegisterSelf(ctx, m)
}

// checkIdentity refuses a certificate that is not this member's: peers
// would refuse its registration, and edges would not know it by its name.
func checkIdentity(cfg Config) error {
	if cfg.TLS == nil {
		return nil
	}
	id := cfg.TLS.Identity()
	if id.Role != pki.RoleCoordinator || id.Name != cfg.Name {
		return fmt.Errorf("coordinator: the certificate %s is for %s, not for coordinator %q: issue one with `edgecell certs issue --role coordinator --name %s`",
			cfg.TLS.Files().Cert, id, cfg.Name, cfg.Name)
	}
	return nil
}

func (c *Coordinator) now() time.Time { return c.cfg.Now() }

// Name is the member's name.
func (c *Coordinator) Name() string { return c.cfg.Name }

// GRPCAddr is the bound gRPC address.
func (c *Coordinator) GRPCAddr() string { return c.lis.Addr().String() }

// RaftAddr is the bound raft address.
func (c *Coordinator) RaftAddr() string { return c.store.RaftAddr() }

// IsLeader reports whether this member is the raft leader now.
func (c *Coordinator) IsLeader() bool { return c.store.IsLeader() }

// Revision is the revision of this member's state.
func (c *Coordinator) Revision() uint64 { return c.store.View().Revision() }

// ServiceInfo lists the gRPC services and methods the member serves.
func (c *Coordinator) ServiceInfo() map[string]grpc.ServiceInfo { return c.grpc.GetServiceInfo() }

// View returns one immutable view of this member's state at consistency,
// as the read API serves it: STALE is this member's current state; LEADER
// and LINEARIZABLE (the default) only on the leader, else an error wrapping
// raftstore.ErrNotLeader (nothing is forwarded). Every read of the view
// answers from its one revision. It is for programs that embed a member (the
// dev cluster, tests); clients use the gRPC API.
func (c *Coordinator) View(ctx context.Context, consistency pb.Consistency) (state.View, error) {
	return c.store.Read(ctx, consistency)
}

// Leader is the name of the member this one knows as the raft leader, ""
// when it knows none.
func (c *Coordinator) Leader() string {
	name, _ := c.store.Leader()
	return name
}

// Snapshot makes this member take a raft snapshot of its state now, rather
// than when the log reaches RaftTuning.SnapshotThreshold (tests, operators).
// A halted member takes none.
func (c *Coordinator) Snapshot() error { return c.store.Snapshot() }

// Close stops serving and shuts raft down. Watch streams are cut, so their
// edges reconnect elsewhere. It does not remove the member from the cluster.
func (c *Coordinator) Close() error {
	var err error
	c.once.Do(func() {
		c.cancel()
		c.health.Shutdown()
		c.srv.Close() // ends watch streams so the graceful stop below does not wait on them
		stopped := make(chan struct{})
		go func() { c.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			c.grpc.Stop()
			<-stopped
		}
		err = c.store.Close()
		c.wg.Wait()
		c.log.Info("coordinator stopped")
	})
	return err
}
