package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// A member whose state machine halted (its binary cannot apply a committed
// command; see raftstore.Store.Halted) serves nothing that reads or writes
// the state: its state is stuck at the entry before, and answering from it
// would show readers a past the others have left, while proposing would
// add entries it cannot apply. Every call gets UNAVAILABLE saying which op
// at which index and that the binary must be upgraded, except the calls in
// servesWhenHalted, which read no state: NodeStatus (peers and `edgecell
// status` show the halt with it), the health service (it answers
// NOT_SERVING) and reflection. Watch streams already open end the same way,
// so their edges follow another member.

var servesWhenHalted = map[string]bool{
	pb.ClusterService_NodeStatus_FullMethodName:                            true,
	grpc_health_v1.Health_Check_FullMethodName:                             true,
	grpc_health_v1.Health_List_FullMethodName:                              true,
	grpc_health_v1.Health_Watch_FullMethodName:                             true,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      true,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: true,
}

func (s *Server) haltedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if s.members.Halted() != nil && !servesWhenHalted[info.FullMethod] {
		return nil, s.haltedStatus()
	}
	return handler(ctx, req)
}

func (s *Server) haltedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if s.members.Halted() != nil && !servesWhenHalted[info.FullMethod] {
		return s.haltedStatus()
	}
	return handler(srv, ss)
}

// haltedStatus is the UNAVAILABLE status of a halted member.
func (s *Server) haltedStatus() error {
	return toStatus(fmt.Errorf("coordinator %s: %w", s.members.Name(), s.members.Halted()))
}
