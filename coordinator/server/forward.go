package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// forwardedKey marks a call a member forwarded to the leader, so that a member
// that lost leadership meanwhile answers "not leader" instead of forwarding
// again (no loops).
const forwardedKey = "x-edgecell-forwarded-by"

type consistencyGetter interface{ GetConsistency() pb.Consistency }

// needsLeader reports whether the call must run on the leader (the method
// table's route).
func needsLeader(fullMethod string, req any) bool {
	switch methods[fullMethod].route {
	case onLeader:
		return true
	case byConsistency:
		c, ok := req.(consistencyGetter)
		return !ok || c.GetConsistency() != pb.Consistency_CONSISTENCY_STALE
	}
	return false
}

// maxForwards bounds how often one call follows a leadership change.
const maxForwards = 5

// forwardUnary runs leader-only calls and leader reads on the leader: a
// follower relays the same request, with its client's identity, to the
// leader's gRPC address and relays the reply (rqlite's thin forwarding
// layer); the leader authorizes it again. A member whose handler finds it
// lost leadership before proposing, or whose forward reaches a member that
// is no longer the leader, follows the leadership change: neither had
// proposed anything, so nothing can apply twice.
func (s *Server) forwardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !needsLeader(info.FullMethod, req) {
		return handler(ctx, req)
	}
	for range maxForwards {
		if s.members.IsLeader() {
			resp, err := handler(ctx, req)
			if !isNotLeader(err) || isForwarded(ctx) {
				return resp, err
			}
		} else if isForwarded(ctx) {
			return nil, toStatus(raftstore.ErrNotLeader)
		}
		resp, err := s.forward(ctx, info.FullMethod, req)
		if !isNotLeader(err) || ctx.Err() != nil {
			return resp, err
		}
	}
	return nil, toStatus(fmt.Errorf("%w: leadership changed %d times during the call", raftstore.ErrNotLeader, maxForwards))
}

// forward relays one call to the leader. A write whose connection failed
// after it was sent may have committed: it is reported as ErrOutcomeUnknown
// (unless the leader said it was not the leader or had halted: then it
// proposed nothing).
func (s *Server) forward(ctx context.Context, fullMethod string, req any) (any, error) {
	conn, err := s.leaderConn(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	reply, err := newReply(fullMethod)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	md := []string{forwardedKey, s.members.Name()}
	if id, ok := callerIdentity(ctx); ok {
		md = append(md, forwardedForKey, id.String())
	}
	fctx := metadata.AppendToOutgoingContext(ctx, md...)
	err = conn.Invoke(fctx, fullMethod, req, reply)
	if err == nil {
		return reply, nil
	}
	if methods[fullMethod].route == onLeader && !isNotLeader(err) && !hasReason(err, ReasonHalted) {
		if st, _ := status.FromError(err); st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded {
			return nil, toStatus(fmt.Errorf("%w: %v", ErrOutcomeUnknown, st.Message()))
		}
	}
	return nil, err
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
		name, _ := s.members.Leader()
		if name != "" && name != s.members.Name() {
			if m, ok := s.reader.View().Member(name); ok && m.GetGrpcAddr() != "" {
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

// propose commits a command on this member, which must be the leader: every
// call that proposes is routed to the leader by forwardUnary, and a member
// that lost leadership since answers ErrNotLeader, which forwardUnary
// follows.
func (s *Server) propose(ctx context.Context, cmd *pb.Command) (*pb.CommandResult, error) {
	if !s.members.IsLeader() {
		return nil, raftstore.ErrNotLeader
	}
	return s.proposer.Propose(ctx, cmd)
}

// peers caches one client connection per member gRPC address.
type peers struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error) // nil: gRPC's own
	creds credentials.TransportCredentials
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// newPeers dials members with tlsSrc's certificate, accepting only
// coordinators; nil dials plaintext.
func newPeers(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsSrc *pki.Source) *peers {
	creds := insecure.NewCredentials()
	if tlsSrc != nil {
		creds = tlsSrc.ClientCredentials(pki.RoleCoordinator)
	}
	return &peers{dial: dial, creds: creds, conns: map[string]*grpc.ClientConn{}}
}

func (p *peers) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(p.creds),
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
