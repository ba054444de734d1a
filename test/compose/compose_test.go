//go:build compose

// Package compose runs the compose deployment (deploy/docker-compose.yml) in
// Docker and injects faults that need hosts of their own: a coordinator cut
// off the network with `docker network disconnect`, a coordinator container
// killed and started again. It checks what users would notice: plain traffic
// through every edge never fails, writes go on through the majority and none
// that was acknowledged is lost, a nonce is accepted once, and every
// container ends running without a panic in its log.
//
//	make fault-compose     # needs a Docker engine; builds the image itself
package compose

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
	"github.com/edgecell/edgecell/internal/testutil"
)

// deployment is one compose project of the deploy file.
type deployment struct {
	t       *testing.T
	project string
	file    string
	network string
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn // by address
	// keyID is the API key the nonce checks name.
	keyID string
	// tls is a copy of the deployment's CA (from its tls volume), which
	// issues the test's own admin and edge certificates.
	tls *clientPKI
}

func repoRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildImage builds the static binary and the FROM scratch image around it,
// as `make image` does, under a tag of this run's own.
func buildImage(t *testing.T, root, tag string) {
	ctxDir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(ctxDir, "edgecell"), "./cmd/edgecell")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, d := range []string{"data", "etc/ssl/certs"} {
		if err := os.MkdirAll(filepath.Join(ctxDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	roots, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		roots = nil // an image without CA roots still runs this test: every upstream is http
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "etc/ssl/certs/ca-certificates.crt"), roots, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "docker", "build", "-q", "-f", filepath.Join(root, "deploy/Dockerfile"), "-t", tag, ctxDir)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
}

// composeFile writes the deploy file with this run's image and without the
// host ports it publishes (the test reaches containers by their addresses,
// and a developer's running deployment keeps its ports).
func composeFile(t *testing.T, root, tag string) string {
	src := filepath.Join(root, "deploy/docker-compose.yml")
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	services, _ := doc["services"].(map[string]any)
	if len(services) == 0 {
		t.Fatalf("%s has no services", src)
	}
	for name, s := range services {
		svc := s.(map[string]any)
		svc["image"] = tag
		delete(svc, "ports")
		if vols, ok := svc["volumes"].([]any); ok {
			for i, v := range vols {
				if str, ok := v.(string); ok && strings.HasPrefix(str, "./") {
					vols[i] = filepath.Join(root, "deploy", str[2:])
				}
			}
		}
		services[name] = svc
	}
	for k := range doc {
		if strings.HasPrefix(k, "x-") {
			delete(doc, k)
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "docker-compose.yml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func up(t *testing.T) *deployment {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("needs docker (and docker-compose): this scenario runs the compose deployment")
	}
	root := repoRoot(t)
	project := fmt.Sprintf("ecfault%d", time.Now().UnixNano()%1e9)
	tag := "edgecell:" + project
	buildImage(t, root, tag)
	d := &deployment{t: t, project: project, file: composeFile(t, root, tag), network: project + "_default",
		conns: map[string]*grpc.ClientConn{}}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker-compose", "-f", d.file, "-p", d.project, "logs", "--no-color", "--tail", "80").CombinedOutput()
			t.Logf("---- container logs:\n%s", out)
		}
		exec.Command("docker-compose", "-f", d.file, "-p", d.project, "down", "-v", "-t", "2").Run()
	})
	d.compose("up", "-d")
	return d
}

// conn is an admin's connection to a coordinator's gRPC port at its
// current address.
func (d *deployment) conn(member string) *grpc.ClientConn {
	d.t.Helper()
	return d.connAs(member, pki.Identity{Role: pki.RoleAdmin, Name: "compose-test"})
}

// connAs is conn presenting a certificate for id.
func (d *deployment) connAs(member string, id pki.Identity) *grpc.ClientConn {
	d.t.Helper()
	addr := d.addr(member, 7101)
	d.mu.Lock()
	defer d.mu.Unlock()
	key := addr + " " + id.String()
	if c, ok := d.conns[key]; ok {
		return c
	}
	if d.tls == nil {
		d.tls = copyPKI(d.t, d.container("certs"))
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(d.tls.creds(d.t, id)))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	d.conns[key] = c
	return c
}

func (d *deployment) admin(member string) pb.AdminServiceClient {
	return pb.NewAdminServiceClient(d.conn(member))
}

func (d *deployment) compose(args ...string) string {
	d.t.Helper()
	return run(d.t, "docker-compose", append([]string{"-f", d.file, "-p", d.project}, args...)...)
}

func (d *deployment) container(service string) string {
	d.t.Helper()
	return d.compose("ps", "-q", service)
}

// addr is a service's address on the project network, from the host. It is
// looked up each time: a container reconnected to the network may get a new
// one.
func (d *deployment) addr(service string, port int) string {
	d.t.Helper()
	ip := run(d.t, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", d.container(service))
	return fmt.Sprintf("%s:%d", ip, port)
}

func (d *deployment) status(via string) (*pb.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return d.admin(via).ClusterStatus(ctx, &pb.ClusterStatusRequest{})
}

// converged waits until every member is up, agrees on the leader and has
// applied the leader's commit index.
func (d *deployment) converged(what string) string {
	d.t.Helper()
	var leader string
	testutil.Eventually(d.t, 90*time.Second, func() error {
		st, err := d.status("n1")
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		leader = st.GetLeader()
		var commit uint64
		for _, m := range st.GetMembers() {
			if m.GetName() == leader {
				commit = m.GetCommitIndex()
			}
		}
		if leader == "" || len(st.GetMembers()) != 3 {
			return fmt.Errorf("%s: leader %q, %d members", what, leader, len(st.GetMembers()))
		}
		for _, m := range st.GetMembers() {
			if m.GetRole() == "unreachable" || m.GetAppliedIndex() < commit {
				return fmt.Errorf("%s: %s is %s at %d, leader committed %d", what, m.GetName(), m.GetRole(), m.GetAppliedIndex(), commit)
			}
		}
		return nil
	})
	return leader
}

// traffic sends plain requests through every edge until stopped and counts
// what failed.
type traffic struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	firstErr     string
}

func (tr *traffic) run(ctx context.Context, d *deployment, edge string, wg *sync.WaitGroup) {
	defer wg.Done()
	url := "http://" + d.addr(edge, 8080) + "/hello"
	client := &http.Client{Timeout: 3 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("X-Routing-Key", "tenant-1")
		resp, err := client.Do(req)
		if ctx.Err() != nil {
			return
		}
		tr.sent.Add(1)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				continue
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		tr.failed.Add(1)
		tr.mu.Lock()
		if tr.firstErr == "" {
			tr.firstErr = fmt.Sprintf("%s: %v", edge, err)
		}
		tr.mu.Unlock()
	}
}

func (d *deployment) put(via, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := d.admin(via).PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: key, Cell: "cell-2"}})
	return err
}

// createKey creates the API key the test checks nonces of (the
// coordinators take nonce checks only for keys that exist).
func (d *deployment) createKey(via string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := d.admin(via).CreateKey(ctx, &pb.CreateKeyRequest{Name: "compose-test"})
	if err != nil {
		d.t.Fatalf("create key: %v", err)
	}
	return resp.GetKey().GetId()
}

func (d *deployment) checkNonce(via, nonce, checkID string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := pb.NewEdgeServiceClient(d.connAs(via, pki.Identity{Role: pki.RoleEdge, Name: "fault-test", Region: "us-east"})).CheckNonces(ctx, &pb.CheckNoncesRequest{Edge: "fault-test", Checks: []*pb.NonceCheck{{
		KeyId: d.keyID, Nonce: nonce, CheckId: checkID, ExpiresUnixMs: time.Now().Add(5 * time.Minute).UnixMilli(),
	}}})
	if err != nil {
		return false, err
	}
	return resp.GetFresh()[0], nil
}

// The leader's container is cut off the network, then reconnected; then a
// follower's container is killed and started again. Plain traffic through
// every edge never fails; the majority goes on accepting writes and a
// nonce, once; the cut-off member catches up after it is reconnected; every
// acknowledged write is on every member; every container runs at the end.
func TestComposeLeaderCutOffAndMemberKilled(t *testing.T) {
	d := up(t)
	leader := d.converged("compose up")
	testutil.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := d.admin("n1").GetPlacement(ctx, &pb.GetPlacementRequest{Key: "tenant-1"})
		return err // apply-config has run
	})
	d.keyID = d.createKey(leader)
	for _, e := range []string{"edge-us-east", "edge-eu-west", "edge-ap-south"} {
		url := "http://" + d.addr(e, 8080) + "/hello"
		testutil.Eventually(t, 60*time.Second, func() error {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("X-Routing-Key", "tenant-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: status %d", e, resp.StatusCode)
			}
			return nil
		})
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tr := &traffic{}
	for _, e := range []string{"edge-us-east", "edge-eu-west", "edge-ap-south"} {
		wg.Add(1)
		go tr.run(ctx, d, e, &wg)
	}
	defer func() { stop(); wg.Wait() }()

	var majority []string
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != leader {
			majority = append(majority, n)
		}
	}
	acked := []string{}
	cut := d.container(leader)
	run(t, "docker", "network", "disconnect", d.network, cut)
	reconnected := false
	defer func() {
		if !reconnected {
			exec.Command("docker", "network", "connect", "--alias", leader, d.network, cut).Run()
		}
	}()
	t.Logf("cut %s (the leader) off %s", leader, d.network)

	// The majority elects a leader and takes writes and the nonce.
	testutil.Eventually(t, 60*time.Second, func() error { return d.put(majority[0], "during-cut-1") })
	acked = append(acked, "during-cut-1")
	fresh, err := false, error(nil)
	testutil.Eventually(t, 30*time.Second, func() error {
		fresh, err = d.checkNonce(majority[1], "contested", "majority/1")
		return err
	})
	if !fresh {
		t.Fatal("the majority refused a nonce nobody had used")
	}
	if again, err := d.checkNonce(majority[0], "contested", "majority/2"); err != nil || again {
		t.Fatalf("a second check of the same nonce through the other member: fresh=%v err=%v; want not fresh", again, err)
	}
	for i := 2; i <= 10; i++ {
		key := fmt.Sprintf("during-cut-%d", i)
		if err := d.put(majority[i%2], key); err != nil {
			t.Fatalf("write %s through the majority: %v", key, err)
		}
		acked = append(acked, key)
	}

	run(t, "docker", "network", "connect", "--alias", leader, d.network, cut)
	reconnected = true
	t.Logf("reconnected %s", leader)
	d.converged("after reconnecting " + leader)

	// A follower killed (no shutdown at all) and started again on its volume.
	victim := majority[0]
	if l := d.converged("before the kill"); l == victim {
		victim = majority[1]
	}
	run(t, "docker", "kill", d.container(victim))
	if err := d.put(leaderOf(t, d, victim), "during-kill"); err != nil {
		t.Fatalf("write with one member killed: %v", err)
	}
	acked = append(acked, "during-kill")
	run(t, "docker", "start", d.container(victim))
	d.converged("after restarting " + victim)

	stop()
	wg.Wait()
	for _, key := range acked {
		for _, n := range []string{"n1", "n2", "n3"} {
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := d.admin(n).GetPlacement(rctx, &pb.GetPlacementRequest{Key: key, Consistency: pb.Consistency_CONSISTENCY_STALE})
			cancel()
			if err != nil || resp.GetPlacement().GetCell() != "cell-2" {
				t.Errorf("acknowledged write %s on %s: %v %v", key, n, resp.GetPlacement(), err)
			}
		}
	}
	t.Logf("plain requests: %d sent, %d failed", tr.sent.Load(), tr.failed.Load())
	if tr.sent.Load() == 0 || tr.failed.Load() != 0 {
		t.Errorf("plain requests through the edges: %d of %d failed (first: %s); static stability wants none", tr.failed.Load(), tr.sent.Load(), tr.firstErr)
	}
	for _, s := range []string{"n1", "n2", "n3", "edge-us-east", "edge-eu-west", "edge-ap-south"} {
		id := d.container(s)
		if state := run(t, "docker", "inspect", "-f", "{{.State.Status}} restarts={{.RestartCount}}", id); !strings.HasPrefix(state, "running") {
			t.Errorf("%s is %s at the end", s, state)
		}
		if logs, _ := exec.Command("docker", "logs", id).CombinedOutput(); strings.Contains(string(logs), "panic:") {
			t.Errorf("%s panicked:\n%s", s, logs)
		}
	}
}

// leaderOf returns a member other than down that answers with a leader.
func leaderOf(t *testing.T, d *deployment, down string) string {
	var via string
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, n := range []string{"n1", "n2", "n3"} {
			if n == down {
				continue
			}
			if st, err := d.status(n); err == nil && st.GetLeader() != "" && st.GetLeader() != down {
				via = n
				return nil
			}
		}
		return fmt.Errorf("no leader among the members that are up")
	})
	return via
}
