package coordinator_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// The attacks the security issue lists, each tried against a real
// three-member cluster through the real API, each doing no harm now.

// A fake coordinator cannot be registered: edges would watch it first and
// it could answer every nonce check "fresh".
func TestAttackFakeMemberIsRefused(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	fake := &pb.Member{Name: "evil", Region: "us-east", GrpcAddr: "169.254.169.254:80", RaftAddr: "169.254.169.254:81"}
	for _, id := range []pki.Identity{
		{Role: pki.RoleEdge, Name: "e1", Region: "us-east"},
		{Role: pki.RoleAdmin, Name: "admin"},
		// A real member's certificate registers only that member.
		{Role: pki.RoleCoordinator, Name: "n1"},
	} {
		c := pb.NewClusterServiceClient(tc.connAs(tc.follower(), tc.pki.Source(t, id)))
		_, err := c.RegisterMember(ctx, &pb.RegisterMemberRequest{Member: fake})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("RegisterMember(evil) as %s: %v; want PermissionDenied", id, err)
		}
		// Overwriting a real member's address is refused the same way.
		hijack := &pb.Member{Name: "n2", Region: "us-east", GrpcAddr: "169.254.169.254:80", RaftAddr: "169.254.169.254:81"}
		if _, err := c.RegisterMember(ctx, &pb.RegisterMemberRequest{Member: hijack}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("RegisterMember(n2 elsewhere) as %s: %v; want PermissionDenied", id, err)
		}
	}
	// The raw Propose RPC that used to commit any command is gone.
	conn := tc.connAs(tc.follower(), tc.pki.Coordinator(t, "n1"))
	err := conn.Invoke(ctx, "/edgecell.v1.ClusterService/Propose", &pb.NodeStatusRequest{}, &pb.NodeStatusResponse{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "not an edgecell method") {
		t.Errorf("Propose: %v; want PermissionDenied", err)
	}
	for name, c := range tc.members {
		if _, ok := stale(t, c).Member("evil"); ok {
			t.Errorf("%s holds the fake member", name)
		}
		if m, _ := stale(t, c).Member("n2"); m.GetGrpcAddr() == fake.GrpcAddr {
			t.Errorf("%s holds n2 at the attacker's address", name)
		}
	}
}

// Bogus voters cannot be added: three of them would stall the cluster.
func TestAttackBogusVotersAreRefused(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	for i, id := range []pki.Identity{
		{Role: pki.RoleEdge, Name: "e1", Region: "us-east"},
		{Role: pki.RoleViewer, Name: "viewer"},
		{Role: pki.RoleCoordinator, Name: "n1"},
	} {
		admin := pb.NewAdminServiceClient(tc.connAs(tc.follower(), tc.pki.Source(t, id)))
		bogus := &pb.Member{Name: fmt.Sprintf("bogus-%d", i), Region: "us-east", RaftAddr: fmt.Sprintf("192.0.2.%d:7201", i+1), GrpcAddr: fmt.Sprintf("192.0.2.%d:7101", i+1)}
		if _, err := admin.AddMember(ctx, &pb.AddMemberRequest{Member: bogus}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("AddMember as %s: %v; want PermissionDenied", id, err)
		}
		if _, err := admin.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: "n2"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("RemoveMember as %s: %v; want PermissionDenied", id, err)
		}
	}
	cs, err := tc.admin(tc.waitLeader()).ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if servers := cs.GetMembers(); err != nil || len(servers) != 3 {
		t.Fatalf("raft configuration %v (%v); want the three members", servers, err)
	}
	if _, err := tc.admin(tc.follower()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("still-writable")}); err != nil {
		t.Fatalf("write after the attempts: %v", err)
	}
}

// One edge reporting connect errors for every endpoint of a cell opens at
// most half of them (max_ejection_percent's default), and only an admin
// can put an endpoint back.
func TestAttackBreakerFloodEjectsAtMostHalfACell(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	cfg := sampleConfig()
	cell := cfg.Cells[0]
	cell.Endpoints = append(cell.Endpoints,
		&pb.Endpoint{Id: "a-use2", Url: "http://127.0.0.1:9003", Region: "us-east", Weight: 1},
		&pb.Endpoint{Id: "a-euw2", Url: "http://127.0.0.1:9004", Region: "eu-west", Weight: 1})
	if _, err := tc.admin(tc.waitLeader()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	flood := &pb.ReportOutcomesRequest{Edge: "e1", Region: "us-east"}
	for _, ep := range cell.Endpoints {
		flood.Outcomes = append(flood.Outcomes, &pb.EndpointOutcomes{Endpoint: ep.GetId(), ConnectErrors: 50})
	}
	e1 := tc.edge(tc.follower(), "e1", "us-east")
	var rev uint64
	for i := range 5 {
		flood.BatchId = uint64(i + 1)
		resp, err := e1.ReportOutcomes(ctx, flood)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		rev = resp.GetRevision()
	}
	open := 0
	bs := stale(t, tc.members[tc.waitLeader()]).Breakers()
	for _, b := range bs {
		if b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED {
			open++
		}
	}
	if open != 2 {
		t.Fatalf("after the flood (revision %d) %d of 4 endpoints are out; want 2 (max_ejection_percent 50)", rev, open)
	}
	for _, id := range []pki.Identity{{Role: pki.RoleEdge, Name: "e1", Region: "us-east"}, {Role: pki.RoleViewer, Name: "viewer"}} {
		admin := pb.NewAdminServiceClient(tc.connAs(tc.follower(), tc.pki.Source(t, id)))
		if _, err := admin.ResetBreaker(ctx, &pb.ResetBreakerRequest{Endpoint: "a-use"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("ResetBreaker as %s: %v; want PermissionDenied", id, err)
		}
	}
}

// Key secrets reach only edges (on the watch stream) and admins (in the
// reply that created them).
func TestAttackSecretsStayWithEdgesAndAdmins(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	created, err := tc.admin(tc.waitLeader()).CreateKey(ctx, &pb.CreateKeyRequest{Name: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	secret := created.GetKey().GetSecrets()[0].GetSecret()
	viewer := tc.connAs(tc.follower(), tc.pki.Source(t, pki.Identity{Role: pki.RoleViewer, Name: "viewer"}))
	if _, err := pb.NewAdminServiceClient(viewer).RotateKey(ctx, &pb.RotateKeyRequest{Id: created.GetKey().GetId()}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("RotateKey as a viewer: %v; want PermissionDenied", err)
	}
	keys, err := pb.NewAdminServiceClient(viewer).ListKeys(ctx, &pb.ListKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(keys.String(), secret) {
		t.Errorf("ListKeys shows a viewer the secret")
	}
	stream, err := pb.NewEdgeServiceClient(viewer).Watch(ctx, &pb.WatchRequest{Edge: "viewer", Region: "us-east"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Watch as a viewer: %v; want PermissionDenied", err)
	}
}

// Health votes count only from edges that follow some member's watch
// stream: an edge certificate alone, with no stream open, votes nothing.
func TestAttackHealthVotesOnlyFromConnectedEdges(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	leader := tc.waitLeader()
	if _, err := tc.admin(leader).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig()}); err != nil {
		t.Fatal(err)
	}
	vote := &pb.ReportHealthRequest{Edge: "e1", Region: "us-east", BatchId: 1, Checks: []*pb.EndpointChecks{
		{Endpoint: "a-use", Results: []*pb.CheckResult{{Ok: false, Detail: "HTTP 503"}}},
	}}
	e1 := tc.edge(tc.follower(), "e1", "us-east")
	if _, err := e1.ReportHealth(ctx, vote); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "connected edges") {
		t.Fatalf("a health vote from an edge with no watch stream: %v; want FailedPrecondition naming connected edges", err)
	}
	observers := func() []string {
		resp, err := tc.admin(leader).ListHealth(ctx, &pb.ListHealthRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ep := range resp.GetEndpoints() {
			for _, o := range ep.GetObservations() {
				out = append(out, ep.GetStatus().GetEndpoint()+"/"+o.GetEdge())
			}
		}
		return out
	}
	if got := observers(); len(got) != 0 {
		t.Fatalf("the refused vote was counted: observations %v", got)
	}

	// The same edge, once it watches another member than the one the leader
	// is, votes.
	var watchOn string
	for name := range tc.members {
		if name != leader {
			watchOn = name
			break
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := tc.edge(watchOn, "e1", "us-east").Watch(wctx, &pb.WatchRequest{Edge: "e1", Region: "us-east"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("watch: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e1.ReportHealth(ctx, vote)
		if err == nil {
			break
		}
		if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			t.Fatalf("a health vote from e1 watching %s: %v", watchOn, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := observers(); !slices.Equal(got, []string{"a-use/e1"}) {
		t.Fatalf("observations after e1's vote: %v; want [a-use/e1]", got)
	}
}
