package server

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// The services see the member through four small interfaces of their own
// (rqlite's HTTP layer over its store, Consul's Deps): a coordinator passes
// its raftstore.Store as the first three and its watch.Hub as the fourth,
// and tests pass fakes of only what a handler uses.

// Proposer commits a command through the raft log and returns its result
// (raftstore.Store.Propose): only the leader proposes, a follower returns
// raftstore.ErrNotLeader and the services forward.
type Proposer interface {
	Propose(ctx context.Context, cmd *pb.Command) (*pb.CommandResult, error)
}

// Reader serves the member's state as immutable views, one per answer
// (raftstore.Store.Read and View).
type Reader interface {
	// Read returns one view at consistency c (STALE, LEADER, or
	// LINEARIZABLE, the default), or why this member cannot serve it.
	Read(ctx context.Context, c pb.Consistency) (state.View, error)
	// View is this member's current state: a stale read that cannot fail.
	View() state.View
}

// Membership is this member's place in the raft group and the group's
// configuration.
type Membership interface {
	Name() string
	IsLeader() bool
	Leader() (name, raftAddr string)
	Servers() ([]raftstore.Server, error)
	AddVoter(ctx context.Context, name, raftAddr string) error
	RemoveServer(ctx context.Context, name string) error
	TransferLeadership(ctx context.Context, to string) error
	Status() raftstore.Status
	// Halted is nil while the member's state machine applies commands, and
	// then why it stopped (see raftstore.Store.Halted); HaltNotify is
	// closed when it stops.
	Halted() error
	HaltNotify() <-chan struct{}
}

// Watches serves edge watch streams from the changes this member applied
// (watch.Hub), and knows the cluster id they carry.
type Watches interface {
	// Serve runs one stream; send gets each message and, when the hub has
	// it encoded already (shared by every stream), its encoding (nil: none).
	Serve(ctx context.Context, req *pb.WatchRequest, send func(msg *pb.WatchResponse, wire []byte) error) error
	ClusterID() string
}

// Deps are what the services run on; every field is required, except that
// a test may leave out what the handlers it calls do not use.
type Deps struct {
	Proposer Proposer
	Reader   Reader
	Members  Membership
	Watches  Watches
}

// MaxMessageSize is the largest gRPC message a coordinator accepts (a whole
// config in ApplyConfig); clients reading whole configs or watch resets
// should accept as much.
const MaxMessageSize = 64 << 20

// Config configures the services of one coordinator.
type Config struct {
	Region   string
	GRPCAddr string // this member's advertised gRPC address
	Logger   *slog.Logger
	// Now is the clock for ack timestamps; nil means time.Now.
	Now func() time.Time
	// PeerTimeout bounds calls to other members (status fan-out, forwarding
	// waits for a leader). Default 3s.
	PeerTimeout time.Duration
	// EdgeRetention is how long a disconnected edge stays listed. Default 10m.
	EdgeRetention time.Duration
	// Dial, when set, opens the gRPC connections to other members
	// (forwarding, status fan-out), for latency simulation; nil dials plain
	// TCP.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS is this member's certificate and the cluster CA: the API then
	// takes only callers with a certificate from that CA and authorizes
	// every call by the method table, and calls to other members present
	// it. Nil serves plaintext to anyone (--insecure).
	TLS *pki.Source
}

// Server implements AdminService, EdgeService and ClusterService.
type Server struct {
	pb.UnimplementedAdminServiceServer
	pb.UnimplementedEdgeServiceServer
	pb.UnimplementedClusterServiceServer

	cfg      Config
	log      *slog.Logger
	proposer Proposer
	reader   Reader
	members  Membership
	watches  Watches
	authz    *authorizer
	peers    *peers
	edges    *edgeRegistry
	// fleet is the cached view of the edges connected across the cluster
	// (CheckAssignment, health votes).
	fleet fleetView
	// nonces batches CheckNonces calls into raft entries.
	nonces nonceBatcher
	// reports batches ReportOutcomes and ReportHealth calls likewise.
	reports reportBatcher

	// stopping is cancelled by Close; it ends every watch stream so that a
	// graceful stop of the gRPC server does not wait for them.
	stopping context.Context
	stop     context.CancelFunc
}

// New builds the services. Call Register to put them on a gRPC server and
// Close to release connections to other members.
func New(d Deps, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PeerTimeout == 0 {
		cfg.PeerTimeout = 3 * time.Second
	}
	if cfg.EdgeRetention == 0 {
		cfg.EdgeRetention = 10 * time.Minute
	}
	stopping, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		proposer: d.Proposer,
		reader:   d.Reader,
		members:  d.Members,
		watches:  d.Watches,
		authz:    &authorizer{tls: cfg.TLS != nil, now: cfg.Now},
		peers:    newPeers(cfg.Dial, cfg.TLS),
		edges:    newEdgeRegistry(d.Members.Name(), cfg.Now, cfg.EdgeRetention),
		stopping: stopping,
		stop:     stop,
	}
	s.nonces = nonceBatcher{s: s, calls: make(chan *nonceCall, 4096)}
	s.reports = reportBatcher{s: s, calls: make(chan *reportCall, 4096), proposers: reportProposers}
	return s
}

// Close ends every watch stream (their edges reconnect elsewhere) and releases
// the connections to other members.
func (s *Server) Close() {
	s.stop()
	s.peers.close()
}

// NewGRPCServer returns a gRPC server carrying the services, the standard
// health service and reflection (so grpcurl works), with TLS (when
// configured), authorization by the method table, recovery, logging and
// leader forwarding.
func (s *Server) NewGRPCServer(extra ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		s.log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			switch c {
			case codes.OK, codes.Canceled, codes.NotFound, codes.InvalidArgument, codes.Aborted, codes.FailedPrecondition:
				return logging.LevelDebug
			case codes.Unavailable, codes.DeadlineExceeded:
				return logging.LevelInfo
			default:
				return logging.LevelError
			}
		}),
	}
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.log.ErrorContext(ctx, "panic in gRPC handler", "panic", p)
		return status.Errorf(codes.Internal, "internal error: %v", p)
	})
	opts := []grpc.ServerOption{
		grpc.InTapHandle(s.authz.tap),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(recoverOpt),
			logging.UnaryServerInterceptor(logger, logOpts...),
			s.authz.unary,
			s.hintLeaderUnary,
			s.haltedUnary,
			s.forwardUnary,
		),
		grpc.ChainStreamInterceptor(
			recovery.StreamServerInterceptor(recoverOpt),
			logging.StreamServerInterceptor(logger, logOpts...),
			s.authz.stream,
			s.haltedStream,
		),
		// A whole config with 100,000 placements is several MiB; every
		// other method has a smaller limit in the method table.
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.ForceServerCodecV2(newCodec()), // watch changes encoded once for every stream

		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(s.cfg.TLS.ServerCredentials()))
	}
	opts = append(opts, extra...)
	gs := grpc.NewServer(opts...)
	pb.RegisterAdminServiceServer(gs, s)
	pb.RegisterEdgeServiceServer(gs, s)
	pb.RegisterClusterServiceServer(gs, s)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return gs, hs
}
