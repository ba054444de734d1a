package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
	"github.com/edgecell/edgecell/internal/testutil"
)

// crashMember is one coordinator process of a crash test, restartable on
// the same data dir.
type crashMember struct {
	name, grpc, raft, data string
	args                   []string
	proc                   *process
	starts                 int
}

type crashCluster struct {
	t       testing.TB
	bin     string
	members []*crashMember
	admins  map[string]pb.AdminServiceClient
}

// raftArgs make snapshots and log compaction happen every few dozen writes,
// so kills land during them too.
var raftArgs = []string{"--snapshot-threshold", "40", "--trailing-logs", "10", "--snapshot-interval", "100ms"}

func newCrashCluster(t testing.TB, bin string, names ...string) *crashCluster {
	c := &crashCluster{t: t, bin: bin, admins: map[string]pb.AdminServiceClient{}}
	var initial []string
	for _, n := range names {
		m := &crashMember{name: n, grpc: freeAddr(t), raft: freeAddr(t), data: filepath.Join(t.TempDir(), n)}
		initial = append(initial, n+"="+m.raft)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.args = append([]string{"coordinator", "--name", m.name, "--region", "us-east", "--data-dir", m.data,
			"--grpc-addr", m.grpc, "--raft-addr", m.raft, "--initial-cluster", strings.Join(initial, ",")}, raftArgs...)
		c.start(m)
		c.dial(m)
	}
	return c
}

func (c *crashCluster) dial(m *crashMember) {
	conn, err := grpc.NewClient(m.grpc, grpc.WithTransportCredentials(testSource(c.t, testAdmin).ClientCredentials(pki.RoleCoordinator)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	c.admins[m.name] = pb.NewAdminServiceClient(conn)
}

func (c *crashCluster) start(m *crashMember) {
	m.starts++
	m.proc = startProcess(c.t, fmt.Sprintf("%s#%d", m.name, m.starts), c.bin, m.args...)
}

// kill SIGKILLs m and waits for it to be gone; it has had no chance to
// flush or close anything.
func (m *crashMember) kill(t testing.TB) { m.proc.kill(t) }

func (c *crashCluster) status(via string) (*pb.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.admins[via].ClusterStatus(ctx, &pb.ClusterStatusRequest{})
}

// waitHealthy waits until every member is running, one is leader, and each
// has applied everything the leader had committed when the wait began.
func (c *crashCluster) waitHealthy(what string) {
	c.t.Helper()
	c.requireRunning()
	var target uint64
	testutil.Eventually(c.t, 60*time.Second, func() error {
		st, err := c.status(c.members[0].name)
		if err != nil {
			return fmt.Errorf("%s: cluster status: %w", what, err)
		}
		if st.GetLeader() == "" {
			return fmt.Errorf("%s: no leader", what)
		}
		if target == 0 {
			for _, ms := range st.GetMembers() {
				if ms.GetName() == st.GetLeader() {
					target = ms.GetCommitIndex()
				}
			}
		}
		for _, ms := range st.GetMembers() {
			if ms.GetRole() == "unreachable" || ms.GetAppliedIndex() < target {
				return fmt.Errorf("%s: member %s is %s at applied index %d, want %d", what, ms.GetName(), ms.GetRole(), ms.GetAppliedIndex(), target)
			}
		}
		if len(st.GetMembers()) != len(c.members) {
			return fmt.Errorf("%s: %d members in status, want %d", what, len(st.GetMembers()), len(c.members))
		}
		return nil
	})
}

// requireRunning fails the test if any member exited on its own: a member
// that cannot restart (a panic on its own files) is the failure this file
// is about.
func (c *crashCluster) requireRunning() {
	c.t.Helper()
	for _, m := range c.members {
		select {
		case <-m.proc.done:
			c.t.Fatalf("member %s exited by itself (%s):\n%s", m.name, m.proc.cmd.ProcessState, m.proc.out)
		default:
		}
		if out := m.proc.out.String(); strings.Contains(out, "panic:") || strings.Contains(out, "fatal error:") {
			c.t.Fatalf("member %s panicked:\n%s", m.name, out)
		}
	}
}

func (c *crashCluster) leader() *crashMember {
	c.t.Helper()
	var name string
	testutil.Eventually(c.t, 30*time.Second, func() error {
		for _, m := range c.members {
			st, err := c.status(m.name)
			if err == nil && st.GetLeader() != "" {
				name = st.GetLeader()
				return nil
			}
		}
		return fmt.Errorf("no leader")
	})
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("leader %q is not a member", name)
	return nil
}

// writer puts placements through random members until stopped, recording
// every acknowledged one (key -> cell). Unacknowledged writes may or may not
// have committed; they are not checked.
type writer struct {
	mu    sync.Mutex
	acked map[string]string
	tried int
}

// run writes through admins, a copy the test does not change while it runs.
func (w *writer) run(ctx context.Context, admins []pb.AdminServiceClient, rng *rand.Rand, done *sync.WaitGroup) {
	defer done.Done()
	for i := 0; ctx.Err() == nil; i++ {
		admin := admins[rng.IntN(len(admins))]
		key, cell := fmt.Sprintf("crash-%05d", i), fmt.Sprintf("cell-%d", 1+i%2)
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := admin.PutPlacement(wctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: key, Cell: cell}})
		cancel()
		w.mu.Lock()
		w.tried++
		if err == nil {
			w.acked[key] = cell
		}
		w.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond) // pacing: do not spin on a member that is down
		}
	}
}

// Coordinator processes SIGKILLed at random moments (while writes flow and
// snapshots and log compactions run every few dozen entries, and once in the
// middle of adding a member) restart on their own data and rejoin; at the
// end every acknowledged write is there, on every member, and no file in a
// data dir is readable by other users.
func TestCoordinatorsRestartAfterKillsAtAnyMoment(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator processes; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	bin := buildBinary(t)
	c := newCrashCluster(t, bin, "n1", "n2", "n3")
	applyConfig(t, bin, c.members[0].grpc, `
regions: [{name: us-east}]
cells:
  - {id: cell-1, endpoints: [{id: a, url: "http://127.0.0.1:1", region: us-east}]}
  - {id: cell-2, endpoints: [{id: b, url: "http://127.0.0.1:2", region: us-east}]}
`)
	c.waitHealthy("start")

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	w := &writer{acked: map[string]string{}}
	wg.Add(1)
	var admins []pb.AdminServiceClient
	for _, m := range c.members {
		admins = append(admins, c.admins[m.name])
	}
	go w.run(ctx, admins, rand.New(rand.NewPCG(seed+1, 1)), &wg)
	defer func() { stop(); wg.Wait() }()

	pause := func() time.Duration { return time.Duration(50+rng.IntN(400)) * time.Millisecond }
	for round := range 9 {
		var victims []*crashMember
		switch round % 3 {
		case 0:
			victims = []*crashMember{c.leader()}
		case 1:
			l := c.leader()
			for _, m := range c.members {
				if m != l {
					victims = []*crashMember{m}
					break
				}
			}
		case 2:
			victims = c.members
		}
		time.Sleep(pause()) // a random moment in the write stream: the schedule, not synchronisation
		var names []string
		for _, m := range victims {
			m.kill(t)
			names = append(names, m.name)
		}
		t.Logf("round %d: killed %s", round, strings.Join(names, ","))
		for _, m := range victims {
			c.start(m)
		}
		c.waitHealthy(fmt.Sprintf("after round %d", round))
	}

	// A member added while its leader is killed: the join is retried until
	// the configuration holds it, and it catches up like any other.
	n4 := &crashMember{name: "n4", grpc: freeAddr(t), raft: freeAddr(t), data: filepath.Join(t.TempDir(), "n4")}
	n4.args = append([]string{"coordinator", "--name", "n4", "--region", "us-east", "--data-dir", n4.data,
		"--grpc-addr", n4.grpc, "--raft-addr", n4.raft}, raftArgs...)
	c.start(n4)
	c.dial(n4)
	l := c.leader()
	joined := make(chan error, 1)
	go func() {
		_, err := cliRun(bin, l.grpc, "", "cluster", "join", "--name", "n4", "--region", "us-east", "--raft-addr", n4.raft, "--grpc-addr", n4.grpc)
		joined <- err
	}()
	time.Sleep(pause())
	l.kill(t)
	c.start(l)
	t.Logf("killed leader %s during cluster join (join: %v)", l.name, <-joined)
	c.members = append(c.members, n4)
	testutil.Eventually(t, 60*time.Second, func() error {
		_, err := cliRun(bin, c.members[0].grpc, "", "cluster", "join", "--name", "n4", "--region", "us-east", "--raft-addr", n4.raft, "--grpc-addr", n4.grpc)
		return err
	})
	c.waitHealthy("after the join")

	stop()
	wg.Wait()
	c.waitHealthy("at the end")
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acked) < 20 {
		t.Fatalf("only %d of %d writes were acknowledged: the cluster was barely available", len(w.acked), w.tried)
	}
	for key, cell := range w.acked {
		for _, m := range c.members {
			// The member's gRPC client may still be in its reconnect
			// backoff from the kills (UNAVAILABLE, connection refused):
			// that is waited out; any other answer is final.
			testutil.Eventually(t, 30*time.Second, func() error {
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := c.admins[m.name].GetPlacement(rctx, &pb.GetPlacementRequest{Key: key, Consistency: pb.Consistency_CONSISTENCY_LINEARIZABLE})
				cancel()
				if status.Code(err) == codes.Unavailable {
					return fmt.Errorf("read through %s: %v", m.name, err)
				}
				if err != nil || resp.GetPlacement().GetCell() != cell {
					t.Fatalf("acknowledged write %s -> %s read through %s: %v, %v", key, cell, m.name, resp.GetPlacement(), err)
				}
				return nil
			})
		}
	}
	t.Logf("%d of %d writes acknowledged, all readable through every member", len(w.acked), w.tried)
	for _, m := range c.members {
		snaps, _ := filepath.Glob(filepath.Join(m.data, "snapshots", "*", "state.bin"))
		if len(snaps) == 0 {
			t.Errorf("member %s never took a snapshot: the kills did not meet a compaction", m.name)
		}
		requirePrivate(t, m.data)
	}
	c.requireRunning()
}

// requirePrivate fails for any file or directory under dir that group or
// others may read, write or enter.
func requirePrivate(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %v: readable by others", path, fi.Mode().Perm())
		}
		return nil
	})
}

// A coordinator whose raft.db was damaged while it was down exits at once
// with an error naming the file (no panic, no crash loop, nothing started
// empty), and the documented way back works: remove it from the cluster,
// wipe its data dir, start it empty and join it again; it catches up.
func TestDamagedRaftDBRefusedAndMemberRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator processes; skipped with -short")
	}
	bin := buildBinary(t)
	c := newCrashCluster(t, bin, "n1", "n2", "n3")
	rev := applyConfig(t, bin, c.members[0].grpc, `
regions: [{name: us-east}]
cells:
  - {id: cell-1, endpoints: [{id: a, url: "http://127.0.0.1:1", region: us-east}]}
placements: [{key: before-damage, cell: cell-1}]
`)
	c.waitHealthy("start")
	victim := c.members[2]
	victim.kill(t)
	db := filepath.Join(victim.data, "raft.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, fi.Size()/3); err != nil {
		t.Fatal(err)
	}

	p := newProcess(victim.name+"-damaged", bin, victim.args...)
	out := runToExit(t, p, "a coordinator on a truncated raft.db")
	if code := p.cmd.ProcessState.ExitCode(); code == 0 || strings.Contains(out, "panic:") || !strings.Contains(out, db) {
		t.Fatalf("start on a truncated raft.db: exit %d, output:\n%s\nwant a non-zero exit with an error naming %s and no panic", code, out, db)
	}

	// The way back the error names.
	// Its leadership, if it had it, moves first.
	testutil.Eventually(t, 30*time.Second, func() error {
		_, err := cliRun(bin, c.members[0].grpc, "", "cluster", "remove", victim.name)
		return err
	})
	if err := os.RemoveAll(victim.data); err != nil {
		t.Fatal(err)
	}
	victim.args = append([]string{"coordinator", "--name", victim.name, "--region", "us-east", "--data-dir", victim.data,
		"--grpc-addr", victim.grpc, "--raft-addr", victim.raft}, raftArgs...)
	c.start(victim)
	testutil.Eventually(t, 60*time.Second, func() error {
		_, err := cliRun(bin, c.members[0].grpc, "", "cluster", "join", "--name", victim.name, "--region", "us-east",
			"--raft-addr", victim.raft, "--grpc-addr", victim.grpc)
		return err
	})
	c.waitHealthy("after the rejoin")
	testutil.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := c.admins[victim.name].GetPlacement(ctx, &pb.GetPlacementRequest{Key: "before-damage", Consistency: pb.Consistency_CONSISTENCY_STALE})
		if err != nil {
			return err
		}
		if resp.GetRevision() < rev || resp.GetPlacement().GetCell() != "cell-1" {
			return fmt.Errorf("rejoined member serves %v at revision %d, want cell-1 at >= %d", resp.GetPlacement(), resp.GetRevision(), rev)
		}
		return nil
	})
}

// runToExit starts p and waits for it to exit by itself, which it must do
// within 30s; it returns the output.
func runToExit(t *testing.T, p *process, what string) string {
	t.Helper()
	p.start(t)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s is still running after 30s:\n%s", what, p.out)
	}
	return p.out.String()
}

// A data dir from the raft-wal era is refused at start with what to do.
func TestRaftWALDataDirRefusedAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "wal", "00000000000000000001-0000000000000001.wal"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	raft := freeAddr(t)
	p := newProcess("n1", bin, "coordinator", "--name", "n1", "--region", "us-east", "--data-dir", data,
		"--grpc-addr", freeAddr(t), "--raft-addr", raft, "--initial-cluster", "n1="+raft)
	out := runToExit(t, p, "a coordinator on a raft-wal data dir")
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.ExitStatus() == 0 ||
		!strings.Contains(out, "raft-wal") || !strings.Contains(out, "cluster join") {
		t.Fatalf("exit %v, output:\n%s\nwant a failure that names raft-wal and the way back (cluster join)", p.cmd.ProcessState, out)
	}
}
