package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/coordinator"
	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
	"github.com/edgecell/edgecell/internal/testutil"
)

var regions = []string{"us-east", "eu-west", "ap-south"}

// testCluster is n coordinators in this process on loopback.
type testCluster struct {
	t       testing.TB
	dirs    map[string]string
	raft    map[string]string
	members map[string]*coordinator.Coordinator
	region  map[string]string
	tuning  coordinator.RaftTuning
	now     func() time.Time // nil: the real clock
	// pki issues every member's and client's certificate: the cluster runs
	// with mutual TLS, as deployments do.
	pki *testutil.PKI
	// insecure runs the members and clients in plaintext instead (for
	// benchmarks that measure what TLS costs).
	insecure bool
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newCluster(t testing.TB, n int) *testCluster {
	return newTunedCluster(t, n, coordinator.RaftTuning{})
}

func newTunedCluster(t testing.TB, n int, tuning coordinator.RaftTuning) *testCluster {
	t.Helper()
	return newClockedCluster(t, n, tuning, nil)
}

// newClockedCluster is newTunedCluster whose members all read now (nil: the
// real clock) for command timestamps and breaker deadlines.
func newClockedCluster(t testing.TB, n int, tuning coordinator.RaftTuning, now func() time.Time) *testCluster {
	t.Helper()
	return startCluster(t, n, tuning, now, false)
}

// startCluster starts n members, with mutual TLS unless insecure.
func startCluster(t testing.TB, n int, tuning coordinator.RaftTuning, now func() time.Time, insecure bool) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, dirs: map[string]string{}, raft: map[string]string{}, members: map[string]*coordinator.Coordinator{}, region: map[string]string{}, tuning: tuning, now: now,
		pki: testutil.NewPKI(t), insecure: insecure}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		tc.dirs[name] = filepath.Join(t.TempDir(), name)
		tc.raft[name] = testutil.FreeAddr(t)
		tc.region[name] = regions[i%len(regions)]
	}
	initial := map[string]string{}
	for name, addr := range tc.raft {
		initial[name] = addr
	}
	for name := range tc.raft {
		tc.start(name, initial)
	}
	t.Cleanup(tc.closeAll)
	tc.waitLeader()
	tc.waitRegistered()
	return tc
}

func (tc *testCluster) start(name string, initial map[string]string) *coordinator.Coordinator {
	tc.t.Helper()
	c, err := coordinator.Start(context.Background(), coordinator.Config{
		Name: name, Region: tc.region[name], DataDir: tc.dirs[name],
		GRPCAddr: "127.0.0.1:0", RaftAddr: tc.raft[name], InitialCluster: initial, Logger: quietLogger(),
		Raft: tc.tuning, Now: tc.now, TickPoll: 10 * time.Millisecond,
		TLS: tc.memberTLS(name),
	})
	if err != nil {
		tc.t.Fatalf("start %s: %v", name, err)
	}
	tc.members[name] = c
	return c
}

func (tc *testCluster) stop(name string) {
	tc.t.Helper()
	if err := tc.members[name].Close(); err != nil {
		tc.t.Errorf("close %s: %v", name, err)
	}
	delete(tc.members, name)
}

func (tc *testCluster) closeAll() {
	for name := range tc.members {
		tc.stop(name)
	}
}

// waitLeader waits until every running member agrees on one leader among them.
func (tc *testCluster) waitLeader() string {
	tc.t.Helper()
	var leader string
	testutil.Eventually(tc.t, 15*time.Second, func() error {
		leader = ""
		for name, c := range tc.members {
			l := c.Leader()
			if _, running := tc.members[l]; !running {
				return fmt.Errorf("%s sees leader %q, not a running member", name, l)
			}
			if leader != "" && l != leader {
				return fmt.Errorf("members disagree: %q and %q", leader, l)
			}
			leader = l
		}
		return nil
	})
	return leader
}

// waitRegistered waits until every running member has recorded its gRPC address.
func (tc *testCluster) waitRegistered() {
	tc.t.Helper()
	testutil.Eventually(tc.t, 15*time.Second, func() error {
		for _, c := range tc.members {
			for name, m := range tc.members {
				got, ok := stale(tc.t, c).Member(name)
				if !ok || got.GetGrpcAddr() != m.GRPCAddr() {
					return fmt.Errorf("%s does not know %s's gRPC address yet", c.Name(), name)
				}
			}
		}
		return nil
	})
}

func (tc *testCluster) follower() string {
	leader := tc.waitLeader()
	for name := range tc.members {
		if name != leader {
			return name
		}
	}
	tc.t.Fatal("no follower")
	return ""
}

func (tc *testCluster) admin(name string) pb.AdminServiceClient {
	tc.t.Helper()
	return pb.NewAdminServiceClient(tc.conn(name))
}

// conn is an admin's client connection to a member, closed when the test ends.
func (tc *testCluster) conn(name string) *grpc.ClientConn {
	tc.t.Helper()
	return tc.connAs(name, tc.pki.Admin(tc.t))
}

// memberTLS is a member's certificate, nil for an insecure cluster.
func (tc *testCluster) memberTLS(name string) *pki.Source {
	if tc.insecure {
		return nil
	}
	return tc.pki.Coordinator(tc.t, name)
}

// connAs is a client connection to a member presenting src's certificate
// (plaintext for an insecure cluster).
func (tc *testCluster) connAs(name string, src *pki.Source) *grpc.ClientConn {
	tc.t.Helper()
	creds := src.ClientCredentials(pki.RoleCoordinator)
	if tc.insecure {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(tc.members[name].GRPCAddr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { conn.Close() })
	return conn
}

// edge is an EdgeService client of a member for the edge edgeName of
// region (its requests must name that edge and region).
func (tc *testCluster) edge(member, edgeName, region string) pb.EdgeServiceClient {
	tc.t.Helper()
	return pb.NewEdgeServiceClient(tc.connAs(member, tc.pki.Edge(tc.t, edgeName, region)))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stale is c's current state: one view, read without consulting the leader.
func stale(t testing.TB, c *coordinator.Coordinator) state.View {
	t.Helper()
	v, err := c.View(context.Background(), pb.Consistency_CONSISTENCY_STALE)
	if err != nil {
		t.Fatalf("stale view of %s: %v", c.Name(), err)
	}
	return v
}

func sampleConfig(placements ...string) *pb.RoutingConfig {
	cfg := &pb.RoutingConfig{
		Regions:   []*pb.Region{{Name: "us-east"}, {Name: "eu-west"}, {Name: "ap-south"}},
		Latencies: []*pb.Latency{{From: "us-east", To: "eu-west", OneWayMs: 40}, {From: "eu-west", To: "ap-south", OneWayMs: 60}, {From: "us-east", To: "ap-south", OneWayMs: 110}},
		Cells: []*pb.Cell{{Id: "cell-a", Endpoints: []*pb.Endpoint{
			{Id: "a-use", Url: "http://127.0.0.1:9001", Region: "us-east", Weight: 1},
			{Id: "a-euw", Url: "http://127.0.0.1:9002", Region: "eu-west", Weight: 1},
		}}},
	}
	for _, k := range placements {
		cfg.Placements = append(cfg.Placements, &pb.Placement{Key: k, Cell: "cell-a"})
	}
	return cfg
}

func TestLeaderLossElectsNewLeaderAndWritesContinue(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	old := tc.waitLeader()
	first, err := tc.admin(old).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("tenant-1")})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	tc.stop(old)
	newLeader := tc.waitLeader()
	if newLeader == old {
		t.Fatalf("leader did not change")
	}
	survivor := tc.follower()
	second, err := tc.admin(survivor).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("tenant-1", "tenant-2"), ExpectRevision: first.GetRevision()})
	if err != nil {
		t.Fatalf("apply after leader loss: %v", err)
	}
	if second.GetRevision() <= first.GetRevision() {
		t.Fatalf("revision went from %d to %d", first.GetRevision(), second.GetRevision())
	}
	got, err := tc.admin(survivor).GetPlacement(ctx, &pb.GetPlacementRequest{Key: "tenant-2"})
	if err != nil || got.GetPlacement().GetCell() != "cell-a" {
		t.Fatalf("linearizable read after failover: %v %v", got, err)
	}
}

func TestWriteToFollowerIsForwarded(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	f := tc.follower()
	if _, err := tc.admin(f).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig()}); err != nil {
		t.Fatalf("apply through follower: %v", err)
	}
	put, err := tc.admin(f).PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: "tenant-9", Cell: "cell-a"}})
	if err != nil {
		t.Fatalf("put placement through follower: %v", err)
	}
	// Every member serves it linearizably, and eventually from its own state.
	for name := range tc.members {
		got, err := tc.admin(name).GetPlacement(ctx, &pb.GetPlacementRequest{Key: "tenant-9"})
		if err != nil || got.GetRevision() < put.GetRevision() || got.GetPlacement().GetModRevision() != put.GetRevision() {
			t.Fatalf("%s linearizable read: %v, err %v; want revision %d", name, got, err, put.GetRevision())
		}
		testutil.Eventually(t, 5*time.Second, func() error {
			got, err := tc.admin(name).GetPlacement(ctx, &pb.GetPlacementRequest{Key: "tenant-9", Consistency: pb.Consistency_CONSISTENCY_STALE})
			if err != nil {
				return err
			}
			if got.GetRevision() < put.GetRevision() {
				return fmt.Errorf("%s at revision %d", name, got.GetRevision())
			}
			return nil
		})
	}
}

func TestInvalidInputIsRejectedAndStateUnchanged(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	a := tc.admin(tc.follower())
	ok, err := a.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("tenant-1")})
	if err != nil {
		t.Fatal(err)
	}
	bad := sampleConfig("tenant-1", "tenant-2")
	bad.Cells[0].Endpoints[1].Region = "mars"
	_, err = a.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: bad})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "cells[0].endpoints[1].region") || !strings.Contains(msg, "mars") {
		t.Fatalf("error does not name the field and value: %q", msg)
	}
	_, err = a.PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: "tenant-3", Cell: "no-such-cell"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "placement.cell") {
		t.Fatalf("placement to a missing cell: %v", err)
	}
	_, err = a.PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: "tenant-3", Cell: "cell-a"}, ExpectRevision: ok.GetRevision() + 100})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("stale expect_revision: want Aborted, got %v", err)
	}
	got, err := a.GetConfig(ctx, &pb.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetRevision() != ok.GetRevision() || len(got.GetConfig().GetPlacements()) != 1 {
		t.Fatalf("state changed by refused writes: revision %d (want %d), %d placements", got.GetRevision(), ok.GetRevision(), len(got.GetConfig().GetPlacements()))
	}
}

func TestRestartKeepsData(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	res, err := tc.admin(tc.waitLeader()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("tenant-1", "tenant-2")})
	if err != nil {
		t.Fatal(err)
	}
	// One member snapshots, so its restart goes through snapshot restore.
	for _, c := range tc.members {
		if err := c.Snapshot(); err != nil {
			t.Fatalf("snapshot %s: %v", c.Name(), err)
		}
		break
	}
	want, err := tc.admin(tc.waitLeader()).GetConfig(ctx, &pb.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for name := range tc.members {
		names = append(names, name)
	}
	tc.closeAll()
	for _, name := range names {
		tc.start(name, nil) // no initial cluster: state on disk must be enough
	}
	tc.waitLeader()
	tc.waitRegistered() // the test's members come back on new gRPC ports
	for _, name := range names {
		got, err := tc.admin(name).GetConfig(ctx, &pb.GetConfigRequest{})
		if err != nil {
			t.Fatalf("%s after restart: %v", name, err)
		}
		if got.GetRevision() < res.GetRevision() || !proto.Equal(got.GetConfig(), want.GetConfig()) {
			t.Fatalf("%s lost data: revision %d, config %v", name, got.GetRevision(), got.GetConfig())
		}
	}
}

func TestAddAndRemoveMember(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	res, err := tc.admin(tc.follower()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("tenant-1")})
	if err != nil {
		t.Fatal(err)
	}
	via := tc.admin(tc.follower()) // before n4 runs: it knows no leader until added
	tc.dirs["n4"], tc.raft["n4"], tc.region["n4"] = filepath.Join(t.TempDir(), "n4"), testutil.FreeAddr(t), "eu-west"
	n4 := tc.start("n4", nil)
	_, err = via.AddMember(ctx, &pb.AddMemberRequest{Member: &pb.Member{
		Name: "n4", Region: "eu-west", RaftAddr: n4.RaftAddr(), GrpcAddr: n4.GRPCAddr(),
	}})
	if err != nil {
		t.Fatalf("add member: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n4.Revision() < res.GetRevision() {
			return fmt.Errorf("n4 at revision %d, want >= %d", n4.Revision(), res.GetRevision())
		}
		return nil
	})
	st, err := tc.admin("n4").ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil || len(st.GetMembers()) != 4 {
		t.Fatalf("cluster status from n4: %v, %v", st, err)
	}
	for _, m := range st.GetMembers() {
		if m.GetRole() == "unreachable" || !m.GetVoter() {
			t.Fatalf("member %s: role %s voter %v", m.GetName(), m.GetRole(), m.GetVoter())
		}
	}
	if _, err := tc.admin("n4").RemoveMember(ctx, &pb.RemoveMemberRequest{Name: "n4"}); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	tc.stop("n4")
	st, err = tc.admin(tc.waitLeader()).ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil || len(st.GetMembers()) != 3 {
		t.Fatalf("cluster status after removal: %v, %v", st, err)
	}
	if _, err := tc.admin(tc.follower()).RemoveMember(ctx, &pb.RemoveMemberRequest{Name: "n9"}); status.Code(err) != codes.NotFound {
		t.Fatalf("removing an unknown member: want NotFound, got %v", err)
	}
}

func TestTransferLeadership(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	old := tc.waitLeader()
	target := tc.follower()
	resp, err := tc.admin(target).TransferLeadership(ctx, &pb.TransferLeadershipRequest{To: target})
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if resp.GetLeader() != target {
		t.Fatalf("leader is %q, want %q (was %q)", resp.GetLeader(), target, old)
	}
	if l := tc.waitLeader(); l != target {
		t.Fatalf("members agree on %q, want %q", l, target)
	}
}

func TestWatchFromFollowerSeesWrites(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := ctxT(t)
	f := tc.follower()
	stream, err := tc.edge(f, "e1", "eu-west").Watch(ctx, &pb.WatchRequest{Edge: "e1", Region: "eu-west"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetReset_() == nil {
		t.Fatalf("first message should be a reset: %v %v", first, err)
	}
	res, err := tc.admin(tc.waitLeader()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig("tenant-7")})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, ch := range msg.GetChanges().GetChanges() {
			if ch.GetRevision() == res.GetRevision() {
				found := false
				for _, ev := range ch.GetEvents() {
					found = found || ev.GetPutPlacement().GetKey() == "tenant-7"
				}
				if !found {
					t.Fatalf("change %d lacks the placement: %v", ch.GetRevision(), ch)
				}
				edges, err := tc.admin(tc.waitLeader()).ListEdges(ctx, &pb.ListEdgesRequest{})
				if err != nil || len(edges.GetEdges()) != 1 || edges.GetEdges()[0].GetCoordinator() != f {
					t.Fatalf("edges: %v %v", edges, err)
				}
				return
			}
		}
	}
}

func TestNewMemberCatchesUpFromSnapshot(t *testing.T) {
	tc := newTunedCluster(t, 3, coordinator.RaftTuning{SnapshotThreshold: 16, TrailingLogs: 2})
	ctx := ctxT(t)
	via := tc.admin(tc.follower())
	if _, err := via.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig()}); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 40 {
		res, err := via.PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: fmt.Sprintf("k%02d", i), Cell: "cell-a"}})
		if err != nil {
			t.Fatal(err)
		}
		last = res.GetRevision()
	}
	for _, c := range tc.members {
		if err := c.Snapshot(); err != nil {
			t.Fatalf("snapshot %s: %v", c.Name(), err)
		}
	}
	// The log is compacted to two entries: n4 can only catch up by installing
	// a snapshot, which goes through the FSM's Restore.
	tc.dirs["n4"], tc.raft["n4"], tc.region["n4"] = filepath.Join(t.TempDir(), "n4"), testutil.FreeAddr(t), "ap-south"
	n4 := tc.start("n4", nil)
	if _, err := via.AddMember(ctx, &pb.AddMemberRequest{Member: &pb.Member{Name: "n4", Region: "ap-south", RaftAddr: n4.RaftAddr(), GrpcAddr: n4.GRPCAddr()}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n4.Revision() < last {
			return fmt.Errorf("n4 at revision %d, want >= %d", n4.Revision(), last)
		}
		return nil
	})
	got, err := tc.admin("n4").ListPlacements(ctx, &pb.ListPlacementsRequest{Consistency: pb.Consistency_CONSISTENCY_STALE})
	if err != nil || len(got.GetPlacements()) != 40 {
		t.Fatalf("n4 placements: %d, %v", len(got.GetPlacements()), err)
	}
	// n4 can serve linearizable reads once it leads: the restored applied
	// index must cover the compacted entries.
	if _, err := tc.admin("n4").TransferLeadership(ctx, &pb.TransferLeadershipRequest{To: "n4"}); err != nil {
		t.Fatalf("transfer to n4: %v", err)
	}
	if _, err := tc.admin("n4").GetConfig(ctx, &pb.GetConfigRequest{Consistency: pb.Consistency_CONSISTENCY_LINEARIZABLE}); err != nil {
		t.Fatalf("linearizable read on n4 as leader: %v", err)
	}
}
