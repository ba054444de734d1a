package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// forwardedKey marks a call a member forwarded to the leader, so that a member
// that lost leadership meanwhile answers "not leader" instead of forwarding
// again (no loops).
const forwardedKey = "x-edgecell-forwarded-by"

// leaderOnly lists the admin methods only the leader can execute. Writes are
// not here: they forward at the command level (see propose).
var leaderOnly = map[string]bool{
	pb.AdminService_AddMember_FullMethodName:          true,
	pb.AdminService_RemoveMember_FullMethodName:       true,
	pb.AdminService_TransferLeadership_FullMethodName: true,
	// The reply carries the key read back from the leader's state.
	pb.AdminService_CreateKey_FullMethodName: true,
	pb.AdminService_RotateKey_FullMethodName: true,
	// Batched into raft entries on the leader (group commit).
	pb.EdgeService_CheckNonces_FullMethodName: true,
}

type consistencyGetter interface{ GetConsistency() pb.Consistency }

// needsLeader reports whether the call must run on the leader.
func needsLeader(method string, req any) bool {
	if leaderOnly[method] {
		return true
	}
	if c, ok := req.(consistencyGetter); ok {
		return c.GetConsistency() != pb.Consistency_CONSISTENCY_STALE
	}
	return false
}

// forwardUnary runs leader-only calls and leader reads on the leader: a
// follower relays the same request to the leader's gRPC address and relays the
// reply (rqlite's thin forwarding layer).
func (s *Server) forwardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !needsLeader(info.FullMethod, req) || s.raft.IsLeader() {
		return handler(ctx, req)
	}
	if isForwarded(ctx) {
		return nil, toStatus(raftstore.ErrNotLeader)
	}
	conn, err := s.leaderConn(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	reply, err := newReply(info.FullMethod)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, s.raft.Name())
	if err := conn.Invoke(ctx, info.FullMethod, req, reply); err != nil {
		return nil, err
	}
	return reply, nil
}

// newReply allocates the response message of a method from the protobuf registry.
func newReply(fullMethod string) (proto.Message, error) {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil, fmt.Errorf("malformed method name %q", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, fmt.Errorf("unknown service %q: %w", svc, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%q is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, fmt.Errorf("unknown method %q", fullMethod)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	return mt.New().Interface(), nil
}

func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// leaderConn waits (bounded by PeerTimeout) for a leader whose gRPC address is
// known and returns a connection to it.
func (s *Server) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PeerTimeout)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		name, _ := s.raft.Leader()
		if name != "" && name != s.raft.Name() {
			if m, ok := s.raft.State().Member(name); ok && m.GetGrpcAddr() != "" {
				return s.peers.get(m.GetGrpcAddr())
			}
		}
		select {
		case <-ctx.Done():
			if name == "" {
				return nil, raftstore.ErrNoLeader
			}
			return nil, fmt.Errorf("%w: leader %q has not registered its gRPC address", raftstore.ErrNoLeader, name)
		case <-t.C:
		}
	}
}

// propose commits a command on the leader, locally or by forwarding it. It
// retries only when the command certainly was not proposed (the target was
// not the leader); once a forwarded command may have reached raft, a failure
// is reported as ErrOutcomeUnknown rather than retried, so a write is never
// applied twice by this layer.
func (s *Server) propose(ctx context.Context, cmd *pb.Command) (*pb.CommandResult, error) {
	for {
		if s.raft.IsLeader() {
			res, err := s.raft.Propose(ctx, cmd)
			if !errors.Is(err, raftstore.ErrNotLeader) {
				return res, err
			}
		}
		if isForwarded(ctx) {
			return nil, raftstore.ErrNotLeader
		}
		conn, err := s.leaderConn(ctx)
		if err != nil {
			return nil, err
		}
		fctx := metadata.AppendToOutgoingContext(ctx, forwardedKey, s.raft.Name())
		resp, err := pb.NewClusterServiceClient(conn).Propose(fctx, &pb.ProposeRequest{Command: cmd})
		if err == nil {
			return resp.GetResult(), nil
		}
		if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && strings.Contains(st.Message(), raftstore.ErrNotLeader.Error()) {
			// The target refused before proposing: safe to find the new leader.
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unavailable && st.Code() != codes.DeadlineExceeded && st.Code() != codes.Canceled {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	}
}

// peers caches one client connection per member gRPC address.
type peers struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error) // nil: gRPC's own
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeers(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *peers {
	return &peers{dial: dial, conns: map[string]*grpc.ClientConn{}}
}

func (p *peers) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
	}
	if p.dial != nil {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return p.dial(ctx, "tcp", addr)
		}))
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to member %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		c.Close()
		delete(p.conns, addr)
	}
}
