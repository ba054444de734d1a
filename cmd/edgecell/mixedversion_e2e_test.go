package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
	"github.com/edgecell/edgecell/internal/testutil"
)

// The op the edgecell_oldops build neither applies nor advertises.
const (
	withheldOp     = 25 // Command.rotate_key
	withheldOpName = "rotate_key"
)

// buildOldOpsBinary builds the binary with the edgecell_oldops tag: the
// same code but for one op, rotate_key, which it neither applies nor
// advertises, as a binary from before that op would.
func buildOldOpsBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgecell-oldops")
	cmd := exec.Command("go", "build", "-tags", "edgecell_oldops", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags edgecell_oldops: %v\n%s", err, out)
	}
	return bin
}

// newMixedCluster starts one coordinator process per name from the binary
// bins gives it. Snapshots are frequent but the log is never compacted
// below what a member was given, so a restarted member always catches up
// by replaying its own log after its own last snapshot.
func newMixedCluster(t testing.TB, bins map[string]string, names ...string) *crashCluster {
	c := &crashCluster{t: t, admins: map[string]pb.AdminServiceClient{}}
	var initial []string
	for _, n := range names {
		m := &crashMember{name: n, grpc: freeAddr(t), raft: freeAddr(t), data: filepath.Join(t.TempDir(), n)}
		initial = append(initial, n+"="+m.raft)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.args = []string{"coordinator", "--name", m.name, "--region", "us-east", "--data-dir", m.data,
			"--grpc-addr", m.grpc, "--raft-addr", m.raft, "--initial-cluster", strings.Join(initial, ","),
			"--snapshot-threshold", "16", "--trailing-logs", "100000", "--snapshot-interval", "100ms"}
		c.run(m, bins[m.name])
		c.dial(m)
	}
	return c
}

// run starts m from bin, on its data dir.
func (c *crashCluster) run(m *crashMember, bin string) {
	m.starts++
	m.proc = startProcess(c.t, fmt.Sprintf("%s#%d(%s)", m.name, m.starts, filepath.Base(bin)), bin, m.args...)
}

// stop interrupts m, as an operator stopping it for an upgrade, and waits
// for it to exit.
func (c *crashCluster) stop(m *crashMember) {
	c.t.Helper()
	if err := m.proc.cmd.Process.Signal(os.Interrupt); err != nil {
		c.t.Fatalf("interrupt %s: %v", m.name, err)
	}
	select {
	case <-m.proc.done:
	case <-time.After(20 * time.Second):
		c.t.Fatalf("%s did not stop on interrupt", m.name)
	}
}

func (c *crashCluster) member(name string) *crashMember {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("no member %s", name)
	return nil
}

// memberState is the whole state m serves, as an edge sees it: the reset
// a Watch from revision 0 starts with (key secrets included).
func memberState(t testing.TB, m *crashMember) (*pb.State, error) {
	edge := pki.Identity{Role: pki.RoleEdge, Name: "probe", Region: "us-east"}
	conn, err := grpc.NewClient(m.grpc, grpc.WithTransportCredentials(testSource(t, edge).ClientCredentials(pki.RoleCoordinator)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	stream, err := pb.NewEdgeServiceClient(conn).Watch(ctx, &pb.WatchRequest{Edge: edge.Name, Region: edge.Region})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if first.GetReset_() == nil {
		return nil, fmt.Errorf("%s: watch from revision 0 began with %v, not a reset", m.name, first)
	}
	return first.GetReset_(), nil
}

// waitAdvertised waits until every member's record, as m serves it, says
// whether the member's binary applies op withheldOp as want says.
func waitAdvertised(t testing.TB, m *crashMember, want map[string]bool) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := memberState(t, m)
		if err != nil {
			return err
		}
		for name, applies := range want {
			i := slices.IndexFunc(st.GetMembers(), func(r *pb.Member) bool { return r.GetName() == name })
			if i < 0 {
				return fmt.Errorf("%s has no record of member %s yet", m.name, name)
			}
			ops := st.GetMembers()[i].GetOps()
			if len(ops) == 0 || slices.Contains(ops, withheldOp) != applies {
				return fmt.Errorf("%s's record of %s advertises ops %v; want them with op %d: %v", m.name, name, ops, withheldOp, applies)
			}
		}
		return nil
	})
}

// waitAgreement waits until every member serves the same state, and
// returns it.
func waitAgreement(t testing.TB, c *crashCluster) *pb.State {
	t.Helper()
	var agreed *pb.State
	testutil.Eventually(t, 30*time.Second, func() error {
		var first *pb.State
		for _, m := range c.members {
			st, err := memberState(t, m)
			if err != nil {
				return err
			}
			if first == nil {
				first = st
			} else if !proto.Equal(first, st) {
				return fmt.Errorf("%s serves revision %d, %s revision %d (or the same revision with other contents)",
					c.members[0].name, first.GetRevision(), m.name, st.GetRevision())
			}
		}
		agreed = first
		return nil
	})
	return agreed
}

func rotate(c *crashCluster, via, key string) (*pb.RotateKeyResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.admins[via].RotateKey(ctx, &pb.RotateKeyRequest{Id: key, GraceSeconds: 3600})
}

// wantRefusedNaming fails unless a rotation through each member of via is
// refused with FAILED_PRECONDITION naming the member that lacks the op and
// saying to upgrade it. It retries only while there is no leader to ask
// (UNAVAILABLE): a rotation that goes through fails the test at once.
func wantRefusedNaming(t testing.TB, c *crashCluster, key, lacking string, via ...string) {
	t.Helper()
	for _, name := range via {
		var err error
		testutil.Eventually(t, 30*time.Second, func() error {
			_, err = rotate(c, name, key)
			if status.Code(err) == codes.Unavailable {
				return err
			}
			return nil
		})
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition {
			t.Fatalf("rotate_key through %s: %v; want FAILED_PRECONDITION", name, err)
		}
		for _, want := range []string{withheldOpName, "member " + lacking, "upgrade"} {
			if !strings.Contains(st.Message(), want) {
				t.Fatalf("rotate_key through %s refused with %q, which does not say %q", name, st.Message(), want)
			}
		}
		var subjects []string
		for _, d := range st.Details() {
			if pf, ok := d.(*errdetails.PreconditionFailure); ok {
				for _, v := range pf.GetViolations() {
					subjects = append(subjects, v.GetType()+" "+v.GetSubject())
				}
			}
		}
		if want := []string{"OP_UNSUPPORTED member/" + lacking}; !slices.Equal(subjects, want) {
			t.Fatalf("rotate_key through %s: precondition failures %v, want %v", name, subjects, want)
		}
	}
}

func secretsOf(st *pb.State, key string) int {
	for _, k := range st.GetKeys() {
		if k.GetId() == key {
			return len(k.GetSecrets())
		}
	}
	return -1
}

// Two op sets in one cluster of real processes: two coordinators of this
// binary and one built without rotate_key. The leader refuses rotate_key,
// whichever member is asked, naming the old member; once that member runs
// the new binary the rotation goes through and every member serves the
// same state. Then a member taken back to the old binary meets a rotation
// in the log it replays: it halts (no panic, nothing served, health
// NOT_SERVING, the halt shown in cluster status, its record re-advertised
// so the leader refuses rotations again, leadership handed straight back
// when it is given it) and, restarted on the new binary,
// replays from its last snapshot and agrees with the others.
func TestMixedVersionClusterGatesAnOpUntilEveryMemberAppliesIt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator processes; skipped with -short")
	}
	newBin, oldBin := buildBinary(t), buildOldOpsBinary(t)
	c := newMixedCluster(t, map[string]string{"n1": newBin, "n2": newBin, "n3": oldBin}, "n1", "n2", "n3")
	n3 := c.member("n3")
	c.waitHealthy("mixed cluster")
	waitAdvertised(t, c.members[0], map[string]bool{"n1": true, "n2": true, "n3": false})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var key *pb.CreateKeyResponse
	testutil.Eventually(t, 30*time.Second, func() (err error) {
		key, err = c.admins["n3"].CreateKey(ctx, &pb.CreateKeyRequest{Name: "tenant-a"})
		return err
	})
	id := key.GetKey().GetId()
	// Enough entries for every member to take snapshots.
	for i := range 20 {
		if _, err := c.admins[c.members[i%3].name].CreateKey(ctx, &pb.CreateKeyRequest{Name: fmt.Sprintf("filler-%d", i)}); err != nil {
			t.Fatalf("create key through %s in the mixed cluster: %v", c.members[i%3].name, err)
		}
	}
	wantRefusedNaming(t, c, id, "n3", "n1", "n2", "n3")
	if got := secretsOf(waitAgreement(t, c), id); got != 1 {
		t.Fatalf("after the refused rotations the key has %d secrets on every member, want 1", got)
	}

	// Rolling upgrade of n3: the op becomes usable once it advertises it.
	c.stop(n3)
	c.run(n3, newBin)
	c.waitHealthy("n3 upgraded")
	waitAdvertised(t, c.members[0], map[string]bool{"n1": true, "n2": true, "n3": true})
	resp, err := rotate(c, "n3", id)
	if err != nil {
		t.Fatalf("rotate_key once every member applies it: %v", err)
	}
	if got := len(resp.GetKey().GetSecrets()); got != 2 {
		t.Fatalf("rotated key has %d secrets, want 2 (the new one and the old one in its grace period)", got)
	}
	if got := secretsOf(waitAgreement(t, c), id); got != 2 {
		t.Fatalf("every member serves the key with %d secrets, want 2", got)
	}

	// n3 goes back to the old binary while a rotation it cannot apply is
	// committed: it halts when it meets a rotation, in its last snapshot
	// (which lists the ops its state applied) or in the log after it.
	c.stop(n3)
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := c.status("n1")
		if err != nil {
			return err
		}
		if l := st.GetLeader(); l != "n1" && l != "n2" {
			return fmt.Errorf("leader is %q; want n1 or n2 while n3 is down", l)
		}
		return nil
	})
	if _, err := rotate(c, "n1", id); err != nil {
		t.Fatalf("rotate_key with n3 down (its record still advertises the op): %v", err)
	}
	c.run(n3, oldBin)
	admin := c.admins["n3"]
	testutil.Eventually(t, 30*time.Second, func() error {
		_, err := admin.ListKeys(ctx, &pb.ListKeysRequest{Consistency: pb.Consistency_CONSISTENCY_STALE})
		st, _ := status.FromError(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), withheldOpName) {
			return fmt.Errorf("stale read on n3: %v; want UNAVAILABLE naming %s", err, withheldOpName)
		}
		for _, want := range []string{"coordinator n3", "index", "must be upgraded"} {
			if !strings.Contains(st.Message(), want) {
				t.Fatalf("n3 answers %q, which does not say %q", st.Message(), want)
			}
		}
		return nil
	})
	c.requireRunning() // halted, not crashed
	healthConn, err := grpc.NewClient(n3.grpc, grpc.WithTransportCredentials(testSource(t, testAdmin).ClientCredentials(pki.RoleCoordinator)))
	if err != nil {
		t.Fatal(err)
	}
	defer healthConn.Close()
	if h, err := healthpb.NewHealthClient(healthConn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("n3's health: %v %v, want NOT_SERVING", h.GetStatus(), err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		out, err := cliRun(newBin, c.member("n1").grpc, "", "cluster", "status")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "n3 is halted: this member's binary cannot") || !strings.Contains(out, withheldOpName) {
			return fmt.Errorf("edgecell cluster status through n1 does not show n3 halted:\n%s", out)
		}
		return nil
	})
	// The halted member re-registers with its binary's ops (through the
	// leader): rotations are refused again, naming it, by whichever of n1
	// and n2 leads.
	waitAdvertised(t, c.member("n1"), map[string]bool{"n3": false})
	waitAdvertised(t, c.member("n2"), map[string]bool{"n3": false})
	wantRefusedNaming(t, c, id, "n3", "n1", "n2")

	// Made leader, the halted member hands leadership straight back, and
	// the cluster goes on taking writes.
	if _, err := c.admins["n1"].TransferLeadership(ctx, &pb.TransferLeadershipRequest{To: "n3"}); err != nil {
		t.Fatalf("transfer leadership to n3: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := c.status("n1")
		if err != nil {
			return err
		}
		if st.GetLeader() == "" || st.GetLeader() == "n3" {
			return fmt.Errorf("leader is %q; want n1 or n2", st.GetLeader())
		}
		_, err = c.admins["n1"].CreateKey(ctx, &pb.CreateKeyRequest{Name: "after-transfer"})
		return err
	})

	c.stop(n3)
	c.run(n3, newBin)
	c.waitHealthy("n3 upgraded again")
	waitAdvertised(t, c.members[0], map[string]bool{"n1": true, "n2": true, "n3": true})
	if got := secretsOf(waitAgreement(t, c), id); got != 3 {
		t.Fatalf("after both rotations every member serves the key with %d secrets, want 3", got)
	}
	c.requireRunning()
}
