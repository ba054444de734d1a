package coordinator_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// allowedRoles is who may call each method, written out here by hand from
// the security issue's rules (not derived from the server's table, which
// is what is under test). A method the services register without a row
// here fails TestEveryRPCWithEveryIdentity.
var allowedRoles = map[string][]pki.Role{
	// Admin writes: admins.
	pb.AdminService_ApplyConfig_FullMethodName:        {pki.RoleAdmin},
	pb.AdminService_PutCell_FullMethodName:            {pki.RoleAdmin},
	pb.AdminService_DeleteCell_FullMethodName:         {pki.RoleAdmin},
	pb.AdminService_PutPlacement_FullMethodName:       {pki.RoleAdmin},
	pb.AdminService_DeletePlacement_FullMethodName:    {pki.RoleAdmin},
	pb.AdminService_AddMember_FullMethodName:          {pki.RoleAdmin},
	pb.AdminService_RemoveMember_FullMethodName:       {pki.RoleAdmin},
	pb.AdminService_TransferLeadership_FullMethodName: {pki.RoleAdmin},
	pb.AdminService_ResetBreaker_FullMethodName:       {pki.RoleAdmin},
	pb.AdminService_CreateKey_FullMethodName:          {pki.RoleAdmin},
	pb.AdminService_RevokeKey_FullMethodName:          {pki.RoleAdmin},
	pb.AdminService_RotateKey_FullMethodName:          {pki.RoleAdmin},
	// Admin reads: admins and viewers (members merge each other's edges).
	pb.AdminService_GetConfig_FullMethodName:      {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_GetCell_FullMethodName:        {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_ListCells_FullMethodName:      {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_GetPlacement_FullMethodName:   {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_ListPlacements_FullMethodName: {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_ListEdges_FullMethodName:      {pki.RoleAdmin, pki.RoleViewer, pki.RoleCoordinator},
	pb.AdminService_ClusterStatus_FullMethodName:  {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_ListBreakers_FullMethodName:   {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_ListHealth_FullMethodName:     {pki.RoleAdmin, pki.RoleViewer},
	pb.AdminService_ListKeys_FullMethodName:       {pki.RoleAdmin, pki.RoleViewer},
	// EdgeService: edges.
	pb.EdgeService_Watch_FullMethodName:           {pki.RoleEdge},
	pb.EdgeService_Ack_FullMethodName:             {pki.RoleEdge},
	pb.EdgeService_ReportOutcomes_FullMethodName:  {pki.RoleEdge},
	pb.EdgeService_ReportHealth_FullMethodName:    {pki.RoleEdge},
	pb.EdgeService_CheckAssignment_FullMethodName: {pki.RoleEdge},
	pb.EdgeService_CheckNonces_FullMethodName:     {pki.RoleEdge},
	pb.EdgeService_AcquireProbe_FullMethodName:    {pki.RoleEdge},
	pb.EdgeService_ReportProbe_FullMethodName:     {pki.RoleEdge},
	// ClusterService: coordinators.
	pb.ClusterService_RegisterMember_FullMethodName: {pki.RoleCoordinator},
	pb.ClusterService_NodeStatus_FullMethodName:     {pki.RoleCoordinator},
	// Health: any certificate of the CA; reflection: operators.
	healthpb.Health_Check_FullMethodName:                                   pki.Roles,
	healthpb.Health_List_FullMethodName:                                    pki.Roles,
	healthpb.Health_Watch_FullMethodName:                                   pki.Roles,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      {pki.RoleAdmin, pki.RoleViewer},
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: {pki.RoleAdmin, pki.RoleViewer},
}

// caller is one identity a test calls with: its TLS client configuration.
type caller struct {
	name string
	role pki.Role // "" for the callers without a trusted certificate
	id   pki.Identity
	tls  *tls.Config
	// denial is the Unauthenticated message part for untrusted callers.
	denial string
}

func (tc *testCluster) callers(t *testing.T) []caller {
	t.Helper()
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(tc.pki.Dir.Files("x").CA)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	// Untrusted callers verify the server the standard way (it has the
	// 127.0.0.1 SAN), as grpcurl does.
	plain := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS13}
	}
	other := newOtherCA(t)
	foreign := other.pair(t, pki.IssueRequest{Identity: pki.Identity{Role: pki.RoleAdmin, Name: "admin"}})
	expired := pairFrom(t, tc.pki.CA, pki.IssueRequest{
		Identity: pki.Identity{Role: pki.RoleAdmin, Name: "admin"}, Now: time.Now().Add(-48 * time.Hour), Lifetime: time.Hour,
	})
	out := []caller{
		{name: "none", tls: plain(), denial: "no client certificate"},
		{name: "wrong CA", tls: plain(foreign), denial: "certificate not trusted"},
		{name: "expired", tls: plain(expired), denial: "certificate not trusted"},
	}
	for _, id := range []pki.Identity{
		{Role: pki.RoleCoordinator, Name: "n1"},
		{Role: pki.RoleEdge, Name: "e1", Region: "us-east"},
		{Role: pki.RoleAdmin, Name: "admin"},
		{Role: pki.RoleViewer, Name: "viewer"},
	} {
		out = append(out, caller{name: string(id.Role), role: id.Role, id: id, tls: tc.pki.Source(t, id).ClientConfig(pki.RoleCoordinator)})
	}
	return out
}

// TestEveryRPCWithEveryIdentity calls every method of every service a
// coordinator serves, through a follower (so forwarded calls are
// authorized again on the leader) and on the leader, with every kind of
// caller, and checks it is let through or refused with the exact denial.
func TestEveryRPCWithEveryIdentity(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	if _, err := tc.admin(tc.waitLeader()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("tenant-1")}); err != nil {
		t.Fatal(err)
	}
	services := map[string]grpc.ServiceDesc{}
	for _, d := range []grpc.ServiceDesc{pb.AdminService_ServiceDesc, pb.EdgeService_ServiceDesc, pb.ClusterService_ServiceDesc,
		healthpb.Health_ServiceDesc, reflectionv1.ServerReflection_ServiceDesc, reflectionv1alpha.ServerReflection_ServiceDesc} {
		services[d.ServiceName] = d
	}
	var all []string
	for _, d := range services {
		for _, m := range d.Methods {
			all = append(all, "/"+d.ServiceName+"/"+m.MethodName)
		}
		for _, s := range d.Streams {
			all = append(all, "/"+d.ServiceName+"/"+s.StreamName)
		}
	}
	sort.Strings(all)
	for _, m := range all {
		if _, ok := allowedRoles[m]; !ok {
			t.Errorf("%s has no row in allowedRoles: decide who may call it, in the server's method table and here", m)
		}
	}
	// Every service the server registers is one of those above.
	for svc := range tc.members[tc.waitLeader()].ServiceInfo() {
		if _, ok := services[svc]; !ok {
			t.Errorf("the coordinator serves %s, which this test does not call", svc)
		}
	}
	callers := tc.callers(t)
	for _, target := range []string{"follower", "leader"} {
		member := tc.follower()
		if target == "leader" {
			member = tc.waitLeader()
		}
		for _, c := range callers {
			conn, err := grpc.NewClient(tc.members[member].GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(c.tls)))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range all {
				err := invoke(ctx, conn, m, tc.request(t, m, c.id))
				checkAuthz(t, fmt.Sprintf("%s via %s as %s", m, target, c.name), m, c, err)
			}
			conn.Close()
		}
	}
}

func checkAuthz(t *testing.T, what, method string, c caller, err error) {
	t.Helper()
	st, _ := status.FromError(err)
	switch {
	case c.role == "":
		if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), c.denial) {
			t.Errorf("%s: %v; want Unauthenticated naming %q", what, err, c.denial)
		}
	case contains(allowedRoles[method], c.role):
		if st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied {
			t.Errorf("%s: %v; want it let through", what, err)
		}
	default:
		want := fmt.Sprintf("may not call %s: it needs %s", method, pki.RoleList(allowedRoles[method]...))
		if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), want) {
			t.Errorf("%s: %v; want PermissionDenied %q", what, err, want)
		}
	}
}

func contains(roles []pki.Role, r pki.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// request builds a harmless request for a method: it names the caller where
// a request speaks for one, and otherwise names things that do not exist,
// so that a write let through is refused by validation, not applied.
func (tc *testCluster) request(t *testing.T, method string, id pki.Identity) proto.Message {
	t.Helper()
	msg := newInput(t, method)
	r := msg.ProtoReflect()
	fields := r.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Kind() != protoreflect.StringKind || f.IsList() {
			continue
		}
		switch f.Name() {
		case "edge":
			r.Set(f, protoreflect.ValueOfString(id.Name))
		case "region":
			r.Set(f, protoreflect.ValueOfString(id.Region))
		case "name", "to", "id", "endpoint", "key":
			r.Set(f, protoreflect.ValueOfString("nope-no-such-thing"))
		}
	}
	switch m := msg.(type) {
	case *pb.RegisterMemberRequest:
		// The member's own record, rewritten unchanged.
		rec, _ := stale(t, tc.members["n1"]).Member("n1")
		m.Member = rec
	case *pb.CreateKeyRequest:
		m.Cells = []string{"no-such-cell"}
	case *pb.CheckNoncesRequest:
		m.Checks = []*pb.NonceCheck{{KeyId: "k_nope", Nonce: "n", CheckId: "c"}}
	}
	return msg
}

func newInput(t *testing.T, fullMethod string) proto.Message {
	t.Helper()
	svc, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		t.Fatalf("%s: %v", fullMethod, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(method))
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		t.Fatalf("%s: %v", fullMethod, err)
	}
	return mt.New().Interface()
}

// invoke calls a unary or streaming method with one request and returns
// the error of the call or of its first response.
func invoke(ctx context.Context, conn *grpc.ClientConn, method string, req proto.Message) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, _ := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	reply, _ := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return conn.Invoke(ctx, method, req, reply.New().Interface())
	}
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: md.IsStreamingServer(), ClientStreams: md.IsStreamingClient()}, method)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil && err != io.EOF {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(reply.New().Interface())
}

// otherCA is a CA the cluster does not trust.
type otherCA struct{ ca *pki.CA }

func newOtherCA(t *testing.T) otherCA {
	t.Helper()
	ca, err := pki.InitCA(t.TempDir(), 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return otherCA{ca}
}

func (o otherCA) pair(t *testing.T, req pki.IssueRequest) tls.Certificate {
	t.Helper()
	return pairFrom(t, o.ca, req)
}

func pairFrom(t *testing.T, ca *pki.CA, req pki.IssueRequest) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// TestAnEdgeSpeaksOnlyForItself: an edge's certificate cannot report, ack,
// probe, watch or check nonces as another edge or from another region.
func TestAnEdgeSpeaksOnlyForItself(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	if _, err := tc.admin(tc.waitLeader()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig()}); err != nil {
		t.Fatal(err)
	}
	e1 := tc.edge(tc.follower(), "e1", "us-east")
	for name, call := range map[string]func() error{
		"report as e2": func() error {
			_, err := e1.ReportOutcomes(ctx, &pb.ReportOutcomesRequest{Edge: "e2", Region: "us-east",
				Outcomes: []*pb.EndpointOutcomes{{Endpoint: "a-use", ConnectErrors: 5}}})
			return err
		},
		"report from eu-west": func() error {
			_, err := e1.ReportOutcomes(ctx, &pb.ReportOutcomesRequest{Edge: "e1", Region: "eu-west",
				Outcomes: []*pb.EndpointOutcomes{{Endpoint: "a-use", ConnectErrors: 5}}})
			return err
		},
		"health as e2": func() error {
			_, err := e1.ReportHealth(ctx, &pb.ReportHealthRequest{Edge: "e2", Region: "us-east"})
			return err
		},
		"ack as e2": func() error {
			_, err := e1.Ack(ctx, &pb.AckRequest{Edge: "e2", Region: "us-east", AppliedRevision: 1})
			return err
		},
		"probe as e2": func() error {
			_, err := e1.AcquireProbe(ctx, &pb.AcquireProbeRequest{Edge: "e2", Endpoint: "a-use"})
			return err
		},
		"nonces as e2": func() error {
			_, err := e1.CheckNonces(ctx, &pb.CheckNoncesRequest{Edge: "e2"})
			return err
		},
		"watch as e2": func() error {
			s, err := e1.Watch(ctx, &pb.WatchRequest{Edge: "e2", Region: "us-east"})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		},
	} {
		err := call()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "spiffe://edgecell/edge/us-east/e1 may speak only for") {
			t.Errorf("%s: %v; want PermissionDenied naming e1's identity", name, err)
		}
	}
	// Nothing the refused reports claimed reached the state.
	for name, c := range tc.members {
		bs := stale(t, c).Breakers()
		for _, b := range bs {
			if b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED {
				t.Errorf("%s holds breaker %v after refused reports", name, b)
			}
		}
	}
}

// TestRaftPortRefusesStrangers: the raft port completes no TLS handshake
// without a coordinator certificate of the cluster CA, and closes a
// plaintext connection without answering it.
func TestRaftPortRefusesStrangers(t *testing.T) {
	tc := newCluster(t, 3)
	addr := tc.members[tc.follower()].RaftAddr()
	other := newOtherCA(t)
	for name, certs := range map[string][]tls.Certificate{
		"no certificate": nil,
		"another CA":     {other.pair(t, pki.IssueRequest{Identity: pki.Identity{Role: pki.RoleCoordinator, Name: "n1"}})},
		"an edge":        {pairFrom(t, tc.pki.CA, pki.IssueRequest{Identity: pki.Identity{Role: pki.RoleEdge, Name: "e1", Region: "us-east"}})},
		"an admin":       {pairFrom(t, tc.pki.CA, pki.IssueRequest{Identity: pki.Identity{Role: pki.RoleAdmin, Name: "admin"}})},
		"a viewer":       {pairFrom(t, tc.pki.CA, pki.IssueRequest{Identity: pki.Identity{Role: pki.RoleViewer, Name: "v"}})},
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{InsecureSkipVerify: true, Certificates: certs, MinVersion: tls.VersionTLS13})
		if err == nil {
			// TLS 1.3: the client may finish before the server refuses;
			// the refusal arrives on the first read.
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "tls:") {
			t.Errorf("%s: %v; want a TLS alert", name, err)
		}
	}
	// Plaintext: the server waits for a TLS hello and gets garbage.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("edgecell-raft/2 cluster=\n\x01\x02\x03"))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err == nil && !strings.Contains(string(buf[:n]), "\x15") { // a TLS alert record, at most
		t.Fatalf("a plaintext peer got %q back", buf[:n])
	}
	// The cluster is unharmed: writes still commit.
	if _, err := tc.admin(tc.waitLeader()).ApplyConfig(ctxT(t), &pb.ApplyConfigRequest{Config: sampleConfig("after")}); err != nil {
		t.Fatalf("after the strangers: %v", err)
	}
}
