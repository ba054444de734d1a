package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/configfile"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/pki"
)

// fakeAdmin is an AdminService that records requests and answers from fields.
type fakeAdmin struct {
	pb.UnimplementedAdminServiceServer

	mu       sync.Mutex
	calls    map[string]int
	applied  []*pb.ApplyConfigRequest
	cells    []*pb.Cell
	config   *pb.RoutingConfig
	revision uint64
	// failures[method] UNAVAILABLE answers come before the real ones.
	failures   map[string]int
	applyErr   error
	placements []*pb.Placement
	status     *pb.ClusterStatusResponse
	edges      *pb.ListEdgesResponse
	lastRead   pb.Consistency
}

func (f *fakeAdmin) enter(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if f.failures[method] > 0 {
		f.failures[method]--
		return status.Error(codes.Unavailable, "no leader: the cluster is electing one; retry")
	}
	return nil
}

func (f *fakeAdmin) ApplyConfig(_ context.Context, req *pb.ApplyConfigRequest) (*pb.ApplyConfigResponse, error) {
	if err := f.enter("ApplyConfig"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applyErr != nil {
		return nil, f.applyErr
	}
	f.applied = append(f.applied, req)
	f.revision++
	f.config = req.GetConfig()
	return &pb.ApplyConfigResponse{Revision: f.revision}, nil
}

func (f *fakeAdmin) GetConfig(_ context.Context, req *pb.GetConfigRequest) (*pb.GetConfigResponse, error) {
	if err := f.enter("GetConfig"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRead = req.GetConsistency()
	cfg := proto.CloneOf(f.config)
	for _, c := range cfg.GetCells() { // as the coordinators stamp them
		c.CreateRevision, c.ModRevision = f.revision, f.revision
	}
	return &pb.GetConfigResponse{Config: cfg, Revision: f.revision}, nil
}

func (f *fakeAdmin) PutCell(_ context.Context, req *pb.PutCellRequest) (*pb.PutCellResponse, error) {
	if err := f.enter("PutCell"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cells = append(f.cells, req.GetCell())
	f.revision++
	return &pb.PutCellResponse{Revision: f.revision}, nil
}

func (f *fakeAdmin) PutPlacement(context.Context, *pb.PutPlacementRequest) (*pb.PutPlacementResponse, error) {
	if err := f.enter("PutPlacement"); err != nil {
		return nil, err
	}
	return &pb.PutPlacementResponse{Revision: 9}, nil
}

func (f *fakeAdmin) ListPlacements(_ context.Context, req *pb.ListPlacementsRequest) (*pb.ListPlacementsResponse, error) {
	if err := f.enter("ListPlacements"); err != nil {
		return nil, err
	}
	resp := &pb.ListPlacementsResponse{Revision: 5}
	for _, p := range f.placements {
		if !strings.HasPrefix(p.GetKey(), req.GetPrefix()) || p.GetKey() <= req.GetStartAfter() {
			continue
		}
		if req.GetLimit() > 0 && uint32(len(resp.Placements)) == req.GetLimit() {
			resp.NextStartAfter = resp.Placements[len(resp.Placements)-1].GetKey()
			break
		}
		resp.Placements = append(resp.Placements, p)
	}
	return resp, nil
}

func (f *fakeAdmin) ClusterStatus(context.Context, *pb.ClusterStatusRequest) (*pb.ClusterStatusResponse, error) {
	if err := f.enter("ClusterStatus"); err != nil {
		return nil, err
	}
	return f.status, nil
}

func (f *fakeAdmin) ListEdges(context.Context, *pb.ListEdgesRequest) (*pb.ListEdgesResponse, error) {
	if err := f.enter("ListEdges"); err != nil {
		return nil, err
	}
	return f.edges, nil
}

func (f *fakeAdmin) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func startFake(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	f := &fakeAdmin{calls: map[string]int{}, failures: map[string]int{}, config: &pb.RoutingConfig{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(testSource(t, pki.Identity{Role: pki.RoleCoordinator, Name: "fake"}).ServerCredentials()))
	pb.RegisterAdminServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

type result struct {
	out, err string
	code     int
}

// cli runs the binary's main logic in-process against addr, as the test
// CA's admin.
func cli(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	return cliWith(t, adminEnv(addr, testFiles(t, testAdmin)), stdin, args...)
}

// devCLI is cli against a dev cluster, with its admin certificate.
func devCLI(t *testing.T, c *devcluster.Cluster, addr, stdin string, args ...string) result {
	t.Helper()
	f, ok := c.TLSFiles("admin")
	if !ok {
		t.Fatal("the dev cluster runs without TLS")
	}
	return cliWith(t, adminEnv(addr, f), stdin, args...)
}

// adminEnv is the environment of an admin of addr holding f.
func adminEnv(addr string, f pki.Files) map[string]string {
	return map[string]string{addrEnv: addr, caCertEnv: f.CA, certEnv: f.Cert, keyEnv: f.Key}
}

// cliWith runs the binary's main logic in-process with the environment env.
func cliWith(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, streams{in: strings.NewReader(stdin), out: &out, err: &errb}, func(k string) string { return env[k] })
	return result{out.String(), errb.String(), code}
}

func TestApplyThenGetConfigRoundTrips(t *testing.T) {
	f, addr := startFake(t)
	r := cli(t, addr, "", "apply", "-f", "../../deploy/routing.example.yaml", "--expect-revision", "0")
	if r.code != 0 || r.out != "applied config at revision 1\n" {
		t.Fatalf("apply: %+v", r)
	}
	example, err := os.Open("../../deploy/routing.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer example.Close()
	want, err := configfile.Load(example)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f.applied[0].GetConfig(), want) {
		t.Fatalf("server received %v\nwant %v", f.applied[0].GetConfig(), want)
	}

	got := cli(t, addr, "", "get", "config", "-o", "yaml", "--consistency", "stale")
	if got.code != 0 || !strings.HasPrefix(got.out, "# edgecell routing config at revision 1\n") {
		t.Fatalf("get config: %+v", got)
	}
	if strings.Contains(got.out, "revision:") {
		t.Errorf("get config -o yaml prints revision stamps:\n%s", got.out)
	}
	if f.lastRead != pb.Consistency_CONSISTENCY_STALE {
		t.Errorf("consistency sent = %v", f.lastRead)
	}
	again := cli(t, addr, got.out, "apply", "-f", "-", "--expect-revision", "1")
	if again.code != 0 || again.out != "applied config at revision 2\n" {
		t.Fatalf("re-apply: %+v", again)
	}
	if !proto.Equal(f.applied[1].GetConfig(), want) || f.applied[1].GetExpectRevision() != 1 {
		t.Errorf("get config | apply -f - changed the config: %v", f.applied[1])
	}

	js := cli(t, addr, "", "get", "config", "-o", "json")
	back, err := configfile.Load(strings.NewReader(js.out))
	if err != nil || !proto.Equal(back, want) {
		t.Errorf("get config -o json does not load back (%v):\n%s", err, js.out)
	}
}

func TestServerRefusalPrintsStatusAndExits1(t *testing.T) {
	f, addr := startFake(t)
	f.applyErr = status.Error(codes.InvalidArgument, `cells[0].endpoints[1].region: unknown region "mars"`)
	r := cli(t, addr, "regions: [{name: us-east}]\n", "apply", "-f", "-")
	if r.code != 1 {
		t.Errorf("exit status %d, want 1", r.code)
	}
	if want := "edgecell: invalid argument: cells[0].endpoints[1].region: unknown region \"mars\"\n"; r.err != want {
		t.Errorf("stderr = %q, want %q", r.err, want)
	}
	if r.out != "" {
		t.Errorf("stdout = %q", r.out)
	}
}

func TestUsageErrorsExit2WithoutCallingTheServer(t *testing.T) {
	f, addr := startFake(t)
	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("regions:\n  - name: us-east\ncels: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"apply"}, `"filename" not set`},
		{[]string{"apply", "-f", bad}, `line 3: cels: unknown field "cels"`},
		{[]string{"apply", "-f", "/does/not/exist.yaml"}, "no such file"},
		{[]string{"apply", "-f", "-", "extra"}, "takes no arguments"},
		{[]string{"get", "config", "-o", "xml"}, `-o "xml"`},
		{[]string{"get", "config", "--consistency", "eventual"}, "want stale, leader or linearizable"},
		{[]string{"get", "cells"}, `unknown command "cells" for "edgecell get"`},
		{[]string{"cell", "get"}, "takes 1 argument"},
		{[]string{"cell", "put", "c"}, "--endpoint"},
		{[]string{"cell", "put", "c", "--endpoint", "e=http://x"}, "no region"},
		{[]string{"placement", "put", "k"}, "takes 2 argument"},
		{[]string{"cluster", "join", "--name", "n4"}, "required flag"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"edges", "--bogus"}, "unknown flag"},
		{[]string{"edges", "--timeout", "0s"}, "--timeout"},
		{[]string{"edge", "--name", "e", "--region", "r", "--data-dir", t.TempDir(), "--coordinators", "x", "--headers-with-underscores", "ignore"}, "--headers-with-underscores: want reject, drop or allow"},
		{[]string{"edge", "--name", "e", "--region", "r", "--data-dir", t.TempDir(), "--coordinators", "x", "--max-header-count", "0"}, "--max-header-count: want a positive number"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := cli(t, addr, "", tt.args...)
			if r.code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", r.code, r.err)
			}
			if !strings.HasPrefix(r.err, "edgecell: ") || !strings.Contains(r.err, tt.want) {
				t.Errorf("stderr %q lacks %q", r.err, tt.want)
			}
		})
	}
	if len(f.calls) != 0 {
		t.Errorf("usage errors reached the server: %v", f.calls)
	}
}

func TestReadsRetryOnceOnUnavailableWritesDoNot(t *testing.T) {
	f, addr := startFake(t)
	f.failures["GetConfig"] = 1
	if r := cli(t, addr, "", "get", "config"); r.code != 0 {
		t.Errorf("a read after one UNAVAILABLE failed: %+v", r)
	}
	if n := f.count("GetConfig"); n != 2 {
		t.Errorf("GetConfig called %d times, want 2", n)
	}

	f.failures["ClusterStatus"] = 2
	r := cli(t, addr, "", "cluster", "status")
	if r.code != 1 || !strings.Contains(r.err, "edgecell: unavailable: no leader") {
		t.Errorf("two UNAVAILABLE answers: %+v", r)
	}
	if n := f.count("ClusterStatus"); n != 2 {
		t.Errorf("ClusterStatus called %d times, want 2 (one retry)", n)
	}

	f.failures["PutPlacement"] = 1
	if r := cli(t, addr, "", "placement", "put", "k", "c"); r.code != 1 {
		t.Errorf("write after UNAVAILABLE: %+v", r)
	}
	if n := f.count("PutPlacement"); n != 1 {
		t.Errorf("a write was retried: PutPlacement called %d times", n)
	}
}

func TestCellPutWithEndpointFlags(t *testing.T) {
	f, addr := startFake(t)
	r := cli(t, addr, "", "cell", "put", "cell-3",
		"--endpoint", "c3-a=http://10.0.0.1:8080/base?x=1,region=us-east,weight=2",
		"--endpoint", "id=c3-b,url=http://10.0.0.2:8080,region=eu-west")
	if r.code != 0 || r.out != "stored cell \"cell-3\" at revision 1\n" {
		t.Fatalf("%+v", r)
	}
	want := &pb.Cell{Id: "cell-3", Endpoints: []*pb.Endpoint{
		{Id: "c3-a", Url: "http://10.0.0.1:8080/base?x=1", Region: "us-east", Weight: 2},
		{Id: "c3-b", Url: "http://10.0.0.2:8080", Region: "eu-west"},
	}}
	if !proto.Equal(f.cells[0], want) {
		t.Errorf("server received %v, want %v", f.cells[0], want)
	}

	file := "id: cell-4\nendpoints:\n  - {id: e, url: 'http://e', region: us-east}\n"
	if r := cli(t, addr, file, "cell", "put", "-f", "-", "-o", "json"); r.code != 0 || !strings.Contains(r.out, `"revision": "2"`) {
		t.Errorf("cell put -f: %+v", r)
	}
	if r := cli(t, addr, file, "cell", "put", "other", "-f", "-"); r.code != 2 || !strings.Contains(r.err, `describes cell "cell-4"`) {
		t.Errorf("mismatched id: %+v", r)
	}
}

func TestParseEndpointRejects(t *testing.T) {
	for spec, want := range map[string]string{
		"e=http://x,region=r,weight=heavy": "weight",
		"e=http://x,region=r,zone=z":       `unknown key "zone"`,
		"id=http://x,region=r":             "looks like a URL",
		"region=r,url=http://x":            "no endpoint id",
		"e":                                "not key=value",
	} {
		if _, err := parseEndpoint(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseEndpoint(%q) = %v, want error with %q", spec, err, want)
		}
	}
}

func TestClusterStatusAndEdgesOutputs(t *testing.T) {
	f, addr := startFake(t)
	f.status = &pb.ClusterStatusResponse{Leader: "n2", Term: 4, Revision: 17, Members: []*pb.MemberStatus{
		{Name: "n1", Region: "us-east", Role: "follower", Voter: true, Term: 4, AppliedIndex: 17, GrpcAddr: "127.0.0.1:7101"},
		{Name: "n2", Region: "eu-west", Role: "leader", Voter: true, Term: 4, AppliedIndex: 17},
		{Name: "n3", Role: "unreachable"},
	}}
	f.edges = &pb.ListEdgesResponse{Revision: 17, UnreachableMembers: []string{"n3"}, Edges: []*pb.EdgeStatus{
		{Name: "edge-a", Region: "us-east", Coordinator: "n1", AppliedRevision: 17, Connected: true},
		{Name: "edge-b", Region: "eu-west", AppliedRevision: 12, Lag: 5, RejectedRevision: 13, RejectReason: "bad"},
	}}

	table := cli(t, addr, "", "cluster", "status")
	if table.code != 0 || !strings.Contains(table.out, "leader: n2  term: 4  revision: 17") {
		t.Fatalf("%+v", table)
	}
	lines := strings.Split(table.out, "\n")
	if !strings.HasPrefix(lines[2], "MEMBER") || !strings.Contains(lines[4], "n2") || !strings.Contains(lines[4], "leader") {
		t.Errorf("status table:\n%s", table.out)
	}
	for _, format := range []string{"json", "yaml"} {
		r := cli(t, addr, "", "cluster", "status", "-o", format)
		got := &pb.ClusterStatusResponse{}
		if err := configfile.Decode(strings.NewReader(r.out), got); err != nil || !proto.Equal(got, f.status) {
			t.Errorf("-o %s does not decode to the response (%v):\n%s", format, err, r.out)
		}
	}

	edges := cli(t, addr, "", "edges")
	if edges.code != 0 || !strings.Contains(edges.err, "coordinator n3 did not answer") {
		t.Errorf("edges: %+v", edges)
	}
	if !strings.Contains(edges.out, "edge-b") || !strings.Contains(edges.out, "13: bad") {
		t.Errorf("edges table:\n%s", edges.out)
	}
	js := cli(t, addr, "", "edges", "-o", "json")
	got := &pb.ListEdgesResponse{}
	if err := protojson.Unmarshal([]byte(js.out), got); err != nil || !proto.Equal(got, f.edges) {
		t.Errorf("edges -o json (%v):\n%s", err, js.out)
	}
}

func TestPlacementListPagesThroughEverything(t *testing.T) {
	f, addr := startFake(t)
	for i := range 2*placementPage + 7 {
		f.placements = append(f.placements, &pb.Placement{Key: fmt.Sprintf("tenant-%06d", i), Cell: "c"})
	}
	sort.Slice(f.placements, func(i, j int) bool { return f.placements[i].GetKey() < f.placements[j].GetKey() })
	r := cli(t, addr, "", "placement", "list", "-o", "json")
	got := &pb.ListPlacementsResponse{}
	if err := protojson.Unmarshal([]byte(r.out), got); err != nil {
		t.Fatal(err)
	}
	if len(got.GetPlacements()) != len(f.placements) || f.count("ListPlacements") != 3 {
		t.Errorf("got %d placements in %d calls, want %d in 3", len(got.GetPlacements()), f.count("ListPlacements"), len(f.placements))
	}
	limited := cli(t, addr, "", "placement", "list", "--prefix", "tenant-0000", "--limit", "3")
	if n := strings.Count(limited.out, "\n"); n != 4 {
		t.Errorf("--limit 3 printed %d lines:\n%s", n, limited.out)
	}
}

func TestUnreachableCoordinatorNamesTheAddress(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	r := cli(t, addr, "", "cluster", "status")
	if r.code != 1 || !strings.Contains(r.err, "cannot reach a coordinator at "+addr) {
		t.Errorf("%+v", r)
	}
}

func TestApplyWaitsForEdges(t *testing.T) {
	f, addr := startFake(t)
	f.edges = &pb.ListEdgesResponse{Edges: []*pb.EdgeStatus{
		{Name: "caught-up", Connected: true, AppliedRevision: 1},
		{Name: "gone", Connected: false}, // disconnected edges are not waited for
	}}
	r := cli(t, addr, "regions: [{name: r}]\n", "apply", "-f", "-", "--wait")
	if r.code != 0 || !strings.Contains(r.out, "every connected edge serves it at revision 1") {
		t.Fatalf("%+v", r)
	}
	f.edges.Edges = append(f.edges.Edges, &pb.EdgeStatus{Name: "stuck", Connected: true, AppliedRevision: 1})
	r = cli(t, addr, "regions: [{name: r}]\n", "apply", "-f", "-", "--wait", "--timeout", "500ms")
	if r.code != 1 || !strings.Contains(r.err, "revision 2 committed, but not every edge applied it") {
		t.Errorf("%+v", r)
	}
}
