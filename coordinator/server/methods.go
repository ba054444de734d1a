package server

import (
	"fmt"

	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// The method table: for every RPC a coordinator serves, who may call it,
// what a request may claim about its caller, where it runs and how large its
// request may be. It is the whole of the API's authorization, meant to be
// reviewed in one read; a method without a row is refused to everyone (and
// fails TestEveryMethodHasARule).

// route says where a method runs.
type route int

const (
	// onReceiver runs on the member that received the call.
	onReceiver route = iota
	// onLeader runs on the leader: a follower forwards the client's request
	// (and its identity) to it. Every write is here: commands are proposed
	// only by the member that authorized the client's request.
	onLeader
	// byConsistency runs on the leader unless the request asks for a stale
	// read.
	byConsistency
)

// Request size limits, checked after authorization (a caller must hold a
// certificate of an allowed role before it can send anything large).
const (
	// DefaultMaxRequestBytes bounds a request of any method not listed
	// otherwise.
	DefaultMaxRequestBytes = 64 << 10
	// MaxReportBytes bounds an edge's outcome or health report (an edge
	// before a cell of thousands of endpoints).
	MaxReportBytes = 4 << 20
	// MaxNonceRequestBytes bounds one CheckNonces call: the most checks a
	// call may carry, each at its longest key id and nonce.
	MaxNonceRequestBytes = 1 << 20
	// MaxConfigBytes bounds ApplyConfig and PutCell: a whole routing config.
	MaxConfigBytes = MaxMessageSize
)

type method struct {
	roles []pki.Role
	// self, if set, checks that the request speaks only for its caller.
	self func(req any, id pki.Identity) error
	// limits, if set, bounds what the request may make the cluster hold
	// (names, free text); it applies with TLS off too.
	limits func(req any) error
	route  route
	// maxBytes bounds the encoded request; 0 means DefaultMaxRequestBytes.
	maxBytes int
}

var (
	admins    = []pki.Role{pki.RoleAdmin}
	operators = []pki.Role{pki.RoleAdmin, pki.RoleViewer}
	edges     = []pki.Role{pki.RoleEdge}
	members   = []pki.Role{pki.RoleCoordinator}
	anyone    = pki.Roles
)

func write() method     { return method{roles: admins, route: onLeader} }
func adminRead() method { return method{roles: operators, route: byConsistency} }
func edgeCall(r route, n int) method {
	return method{roles: edges, self: edgeSelf, limits: checkEdgeRequest, route: r, maxBytes: n}
}

var methods = map[string]method{
	// AdminService: writes by admins, reads by admins and viewers. Key
	// secrets leave only in CreateKey's and RotateKey's replies (admins).
	pb.AdminService_ApplyConfig_FullMethodName:     {roles: admins, route: onLeader, maxBytes: MaxConfigBytes},
	pb.AdminService_GetConfig_FullMethodName:       adminRead(),
	pb.AdminService_PutCell_FullMethodName:         {roles: admins, route: onLeader, maxBytes: MaxConfigBytes},
	pb.AdminService_GetCell_FullMethodName:         adminRead(),
	pb.AdminService_ListCells_FullMethodName:       adminRead(),
	pb.AdminService_DeleteCell_FullMethodName:      write(),
	pb.AdminService_PutPlacement_FullMethodName:    write(),
	pb.AdminService_GetPlacement_FullMethodName:    adminRead(),
	pb.AdminService_ListPlacements_FullMethodName:  adminRead(),
	pb.AdminService_DeletePlacement_FullMethodName: write(),
	// Members ask each other for their local edges (local_only) to merge
	// the fleet view.
	pb.AdminService_ListEdges_FullMethodName:          {roles: []pki.Role{pki.RoleAdmin, pki.RoleViewer, pki.RoleCoordinator}},
	pb.AdminService_ClusterStatus_FullMethodName:      {roles: operators},
	pb.AdminService_AddMember_FullMethodName:          write(),
	pb.AdminService_RemoveMember_FullMethodName:       write(),
	pb.AdminService_TransferLeadership_FullMethodName: write(),
	pb.AdminService_ListBreakers_FullMethodName:       adminRead(),
	pb.AdminService_ResetBreaker_FullMethodName:       write(),
	pb.AdminService_ListHealth_FullMethodName:         adminRead(),
	pb.AdminService_CreateKey_FullMethodName:          write(),
	pb.AdminService_ListKeys_FullMethodName:           adminRead(),
	pb.AdminService_RevokeKey_FullMethodName:          write(),
	pb.AdminService_RotateKey_FullMethodName:          write(),

	// EdgeService: edges only, each speaking only for itself (its name and
	// region are the ones in its certificate). Watch streams key secrets:
	// edges need them to verify signatures.
	pb.EdgeService_Watch_FullMethodName:           edgeCall(onReceiver, 0),
	pb.EdgeService_Ack_FullMethodName:             edgeCall(onReceiver, 0),
	pb.EdgeService_ReportOutcomes_FullMethodName:  edgeCall(onLeader, MaxReportBytes),
	pb.EdgeService_ReportHealth_FullMethodName:    edgeCall(onLeader, MaxReportBytes),
	pb.EdgeService_CheckAssignment_FullMethodName: edgeCall(onReceiver, 0),
	pb.EdgeService_CheckNonces_FullMethodName:     edgeCall(onLeader, MaxNonceRequestBytes),
	pb.EdgeService_AcquireProbe_FullMethodName:    edgeCall(onLeader, 0),
	pb.EdgeService_ReportProbe_FullMethodName:     edgeCall(onLeader, 0),

	// ClusterService: members only; a member registers only itself.
	pb.ClusterService_RegisterMember_FullMethodName: {roles: members, self: memberSelf, route: onLeader},
	pb.ClusterService_NodeStatus_FullMethodName:     {roles: members},

	// The standard health service (load balancers, `grpc_health_probe`)
	// and reflection (grpcurl) need a certificate too, of any role.
	grpc_health_v1.Health_Check_FullMethodName:                             {roles: anyone},
	grpc_health_v1.Health_List_FullMethodName:                              {roles: anyone},
	grpc_health_v1.Health_Watch_FullMethodName:                             {roles: anyone},
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      {roles: operators},
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: {roles: operators},
}

type edgeNamed interface{ GetEdge() string }
type regionNamed interface{ GetRegion() string }

// edgeSelf: an edge's request names the edge (and region) in its certificate.
func edgeSelf(req any, id pki.Identity) error {
	e, ok := req.(edgeNamed)
	if !ok {
		return fmt.Errorf("request %T names no edge", req)
	}
	if e.GetEdge() != id.Name {
		return fmt.Errorf("%s may speak only for itself, and the request names edge %q", id, e.GetEdge())
	}
	if r, ok := req.(regionNamed); ok && r.GetRegion() != id.Region {
		return fmt.Errorf("%s may speak only for its own region, and the request names region %q", id, r.GetRegion())
	}
	return nil
}

// memberSelf: a member registers only the member in its certificate.
func memberSelf(req any, id pki.Identity) error {
	r, ok := req.(*pb.RegisterMemberRequest)
	if !ok {
		return fmt.Errorf("request %T is not a member registration", req)
	}
	if n := r.GetMember().GetName(); n != id.Name {
		return fmt.Errorf("%s may register only itself, and the request names member %q", id, n)
	}
	return nil
}
