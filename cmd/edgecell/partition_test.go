package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
	"github.com/edgecell/edgecell/internal/testutil"
)

// A coordinator minority cut off from the majority never answers "fresh":
// three coordinator processes, each running as its own user, so that
// iptables' owner match can cut the leader off from the other two (both
// directions, raft and gRPC) while the test, as root, still reaches every
// member. Checks sent to the cut-off member fail; the majority elects a
// leader and accepts the nonce once; after the partition heals, none of the
// cut-off member's checks turns out to have been accepted.
func TestMinorityCutOffNeverAnswersFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinator processes and changes iptables; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: coordinators run as other users and iptables cuts them apart")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables (Debian package iptables)")
	}
	// A directory every member's user may use, with the binary in it.
	dir, err := os.MkdirTemp("", "edgecell-partition-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "edgecell")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	type member struct {
		name, grpc, raft string
		uid              uint32
	}
	members := []*member{
		{"n1", freeAddr(t), freeAddr(t), 61001},
		{"n2", freeAddr(t), freeAddr(t), 61002},
		{"n3", freeAddr(t), freeAddr(t), 61003},
	}
	var initial []string
	for _, m := range members {
		initial = append(initial, m.name+"="+m.raft)
	}
	for _, m := range members {
		data := filepath.Join(dir, m.name)
		if err := os.Mkdir(data, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chown(data, int(m.uid), int(m.uid))
		p := newProcess(m.name, bin, "coordinator", "--name", m.name, "--region", "us-east",
			"--data-dir", data, "--grpc-addr", m.grpc, "--raft-addr", m.raft, "--initial-cluster", strings.Join(initial, ","))
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: m.uid, Gid: m.uid}}
		p.cmd.Env = append(os.Environ(), tlsEnv(filesFor(t, filepath.Join(dir, m.name+"-tls"), int(m.uid),
			testFiles(t, pki.Identity{Role: pki.RoleCoordinator, Name: m.name})))...)
		p.start(t)
	}
	clients := map[string]pb.EdgeServiceClient{}
	for _, m := range members {
		conn, err := grpc.NewClient(m.grpc, grpc.WithTransportCredentials(testSource(t, pki.Identity{Role: pki.RoleEdge, Name: "e1", Region: "us-east"}).ClientCredentials(pki.RoleCoordinator)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[m.name] = pb.NewEdgeServiceClient(conn)
	}
	status := &pb.ClusterStatusResponse{}
	testutil.Eventually(t, 30*time.Second, func() error {
		out, err := cliRun(bin, members[0].grpc, "", "cluster", "status", "-o", "json")
		if err != nil {
			return err
		}
		if err := protojson.Unmarshal([]byte(out), status); err != nil {
			return err
		}
		for _, ms := range status.GetMembers() {
			if ms.GetGrpcAddr() == "" {
				return fmt.Errorf("member %s has not registered yet", ms.GetName())
			}
		}
		if status.GetLeader() == "" || len(status.GetMembers()) != 3 {
			return fmt.Errorf("no leader yet: %v", status)
		}
		return nil
	})
	created, err := cliRun(bin, members[0].grpc, "", "key", "create", "--name", "partition-test")
	if err != nil {
		t.Fatal(err)
	}
	keyID := regexp.MustCompile(`key id: (k_[0-9a-f]+)`).FindStringSubmatch(created)
	if keyID == nil {
		t.Fatalf("key create printed no key id:\n%s", created)
	}
	var cut *member
	var majority []*member
	for _, m := range members {
		if m.name == status.GetLeader() {
			cut = m
		} else {
			majority = append(majority, m)
		}
	}

	// Cut the leader off: its packets to the others' ports, and theirs to its ports.
	var rules [][]string
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	for _, other := range majority {
		for _, p := range []string{port(other.raft), port(other.grpc)} {
			rules = append(rules, []string{"OUTPUT", "-o", "lo", "-p", "tcp", "-m", "owner", "--uid-owner", fmt.Sprint(cut.uid), "--dport", p, "-j", "DROP"})
		}
		for _, p := range []string{port(cut.raft), port(cut.grpc)} {
			rules = append(rules, []string{"OUTPUT", "-o", "lo", "-p", "tcp", "-m", "owner", "--uid-owner", fmt.Sprint(other.uid), "--dport", p, "-j", "DROP"})
		}
	}
	heal := func() {
		for _, r := range rules {
			exec.Command("iptables", append([]string{"-D"}, r...)...).Run()
		}
	}
	t.Cleanup(heal)
	for _, r := range rules {
		if out, err := exec.Command("iptables", append([]string{"-I"}, r...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables -I %v: %v\n%s", r, err, out)
		}
	}

	check := func(member, checkID string) (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		resp, err := clients[member].CheckNonces(ctx, &pb.CheckNoncesRequest{Edge: "e1", Checks: []*pb.NonceCheck{{
			KeyId: keyID[1], Nonce: "contested", CheckId: checkID, ExpiresUnixMs: time.Now().Add(5 * time.Minute).UnixMilli(),
		}}})
		if err != nil {
			return false, err
		}
		return resp.GetFresh()[0], nil
	}

	// The cut-off member answers errors, never fresh, while the majority
	// moves on without it.
	var cutIDs []string
	majorityFresh := false
	for i := 0; i < 4 || !majorityFresh; i++ {
		id := fmt.Sprintf("cut/%d", i)
		cutIDs = append(cutIDs, id)
		if fresh, err := check(cut.name, id); err == nil || fresh {
			t.Fatalf("the cut-off member %s answered check %s: fresh=%v, err=%v; want an error", cut.name, id, fresh, err)
		}
		if !majorityFresh {
			fresh, err := check(majority[i%2].name, "majority/1")
			if err == nil && !fresh {
				t.Fatal("the majority refused a nonce no one else could have stored")
			}
			majorityFresh = err == nil
		}
		if i > 20 {
			t.Fatal("the majority never accepted the nonce")
		}
	}

	// Healed: the cut-off member's checks were never accepted, and the
	// majority's still is (same answer for its retry).
	heal()
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, id := range cutIDs {
			fresh, err := check(cut.name, id)
			if err != nil {
				return err
			}
			if fresh {
				t.Fatalf("after healing, check %s sent to the cut-off member is fresh: a minority accepted a nonce", id)
			}
		}
		if fresh, err := check(majority[0].name, "majority/1"); err != nil || !fresh {
			return fmt.Errorf("the majority's check retried: fresh=%v err=%v", fresh, err)
		}
		return nil
	})
}

// filesFor copies f into dir, owned by uid, for a process running as uid
// (the key is 0600: only its owner may read it).
func filesFor(t *testing.T, dir string, uid int, f pki.Files) pki.Files {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, uid, uid)
	out := pki.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	for from, to := range map[string]string{f.CA: out.CA, f.Cert: out.Cert, f.Key: out.Key} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(to, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
