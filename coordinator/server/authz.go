package server

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/internal/pki"
)

// forwardedForKey carries the identity of the client whose request a member
// forwards to the leader. The leader believes it only from a coordinator.
const forwardedForKey = "x-edgecell-forwarded-for"

// authorizer enforces the method table. With TLS off (--insecure) it only
// bounds request sizes: there are no identities to check.
type authorizer struct {
	tls bool
	now func() time.Time
}

type identityKey struct{}

// callerIdentity is the identity a call was authorized as (the original
// client's for a forwarded call); ok is false with TLS off.
func callerIdentity(ctx context.Context) (pki.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(pki.Identity)
	return id, ok
}

// tap refuses a call by its method and the connection's identity before a
// byte of its request is read: a caller without a trusted certificate, or of
// a role the method does not admit, costs a header frame, not a decode.
// A coordinator passes for methods that run on the leader (it forwards its
// clients' calls); the interceptors check the client it forwards for.
func (a *authorizer) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !a.tls {
		return ctx, nil
	}
	m, ok := methods[info.FullMethodName]
	if !ok {
		return ctx, status.Errorf(codes.PermissionDenied, "%s is not an edgecell method anyone may call", info.FullMethodName)
	}
	id, err := pki.PeerIdentity(ctx, a.now())
	if err != nil {
		return ctx, status.Error(codes.Unauthenticated, err.Error())
	}
	if slices.Contains(m.roles, id.Role) || id.Role == pki.RoleCoordinator && m.route != onReceiver {
		return ctx, nil
	}
	return ctx, denied(id, info.FullMethodName, m)
}

func denied(id pki.Identity, fullMethod string, m method) error {
	return status.Errorf(codes.PermissionDenied, "%s may not call %s: it needs %s", id, fullMethod, pki.RoleList(m.roles...))
}

// caller is the identity a call is authorized as: the connection's, or for
// a call a coordinator forwarded, the client's it names.
func (a *authorizer) caller(ctx context.Context) (pki.Identity, error) {
	id, err := pki.PeerIdentity(ctx, a.now())
	if err != nil {
		return pki.Identity{}, status.Error(codes.Unauthenticated, err.Error())
	}
	if id.Role != pki.RoleCoordinator {
		return id, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	switch v := md.Get(forwardedForKey); len(v) {
	case 0:
		return id, nil
	case 1:
		fid, err := pki.ParseURI(v[0])
		if err != nil {
			return pki.Identity{}, status.Errorf(codes.InvalidArgument, "%s: %v", forwardedForKey, err)
		}
		return fid, nil
	default:
		return pki.Identity{}, status.Errorf(codes.InvalidArgument, "%s given %d times", forwardedForKey, len(v))
	}
}

// authorize checks one request against its method's row and returns the
// context carrying the caller's identity.
func (a *authorizer) authorize(ctx context.Context, fullMethod string, req any) (context.Context, error) {
	m, ok := methods[fullMethod]
	if !ok && a.tls {
		return ctx, status.Errorf(codes.PermissionDenied, "%s is not an edgecell method anyone may call", fullMethod)
	}
	if msg, isMsg := req.(proto.Message); isMsg {
		limit := m.maxBytes
		if limit == 0 {
			limit = DefaultMaxRequestBytes
		}
		if n := proto.Size(msg); n > limit {
			return ctx, status.Errorf(codes.ResourceExhausted, "%s: the request is %d bytes, and this method takes at most %d", fullMethod, n, limit)
		}
	}
	if m.limits != nil {
		if err := m.limits(req); err != nil {
			return ctx, err
		}
	}
	if !a.tls {
		return ctx, nil
	}
	id, err := a.caller(ctx)
	if err != nil {
		return ctx, err
	}
	if !slices.Contains(m.roles, id.Role) {
		return ctx, denied(id, fullMethod, m)
	}
	if m.self != nil {
		if err := m.self(req, id); err != nil {
			return ctx, status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// stream authorizes a stream's first request (every streaming method here
// takes one request, or a first one that says who asks) before the handler
// sees it; later ones are bounded by size.
func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &authorizedStream{ServerStream: ss, a: a, method: info.FullMethod, ctx: ss.Context()})
}

type authorizedStream struct {
	grpc.ServerStream
	a      *authorizer
	method string
	ctx    context.Context
	done   bool
}

func (s *authorizedStream) Context() context.Context { return s.ctx }

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	ctx, err := s.a.authorize(s.ServerStream.Context(), s.method, m)
	if err != nil {
		return err
	}
	if !s.done {
		s.ctx, s.done = ctx, true
	}
	return nil
}
