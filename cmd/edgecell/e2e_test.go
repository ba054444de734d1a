package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/freeport"
	"github.com/edgecell/edgecell/internal/testutil"
)

// e2eDeadline bounds every wait of the end-to-end test: a leader election after
// a SIGKILL, edges reconnecting with backoff.
const e2eDeadline = 60 * time.Second

// TestEndToEnd builds the binary and runs a real cluster as processes: three
// coordinators and two edges (us-east, eu-west) on loopback. It applies a config
// with the CLI, proxies through each edge, SIGKILLs the leader, applies a changed
// config through a survivor, and checks that both edges reach the new revision
// and route by it.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds the binary and runs processes; skipped with -short")
	}
	start := time.Now()
	bin := buildBinary(t)
	t.Logf("%s: binary built", time.Since(start).Round(time.Millisecond))
	dir := t.TempDir()

	// Coordinators n1 (us-east), n2 (eu-west), n3 (us-east).
	type member struct{ name, region, grpc, raft string }
	members := []member{
		{"n1", "us-east", freeAddr(t), freeAddr(t)},
		{"n2", "eu-west", freeAddr(t), freeAddr(t)},
		{"n3", "us-east", freeAddr(t), freeAddr(t)},
	}
	var initial, grpcAddrs []string
	for _, m := range members {
		initial = append(initial, m.name+"="+m.raft)
		grpcAddrs = append(grpcAddrs, m.grpc)
	}
	procs := map[string]*process{}
	for _, m := range members {
		procs[m.name] = startProcess(t, m.name, bin, "coordinator", "--log-level", "debug",
			"--name", m.name, "--region", m.region, "--data-dir", filepath.Join(dir, m.name),
			"--grpc-addr", m.grpc, "--raft-addr", m.raft, "--initial-cluster", strings.Join(initial, ","))
	}

	// Two backends per region for cell-1, and eu-west-3 for cell-2.
	backends := map[string]string{}
	for _, id := range []string{"us-east-1", "us-east-2", "eu-west-1", "eu-west-2", "eu-west-3"} {
		srv := httptest.NewServer(echoBackend(id, id[:strings.LastIndex(id, "-")]))
		t.Cleanup(srv.Close)
		backends[id] = srv.URL
	}
	cfg := e2eConfig(backends, false)

	// The first apply also waits out the initial election.
	rev1 := applyConfig(t, bin, members[0].grpc, cfg)
	t.Logf("%s: config applied at revision %d", time.Since(start).Round(time.Millisecond), rev1)

	edges := map[string]string{} // region -> base URL
	for _, region := range []string{"us-east", "eu-west"} {
		listen := freeAddr(t)
		name := "edge-" + region
		procs[name] = startProcess(t, name, bin, "edge", "--log-level", "debug",
			"--name", name, "--region", region, "--data-dir", filepath.Join(dir, name),
			"--listen", listen, "--coordinators", strings.Join(grpcAddrs, ","))
		edges[region] = "http://" + listen
	}
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	for region, url := range edges {
		eventually(t, "edge "+region+" proxies tenant-1 to its own region", func() error {
			return expectServed(client, url, "tenant-1", region)
		})
	}
	waitEdgesAt(t, bin, members[0].grpc, rev1)
	t.Logf("%s: both edges proxy and report revision %d", time.Since(start).Round(time.Millisecond), rev1)

	// Kill the leader the way a crash would.
	var status pb.ClusterStatusResponse
	runJSON(t, bin, members[0].grpc, &status, "cluster", "status")
	leader := status.GetLeader()
	if procs[leader] == nil {
		t.Fatalf("cluster status names leader %q, not one of the members", leader)
	}
	procs[leader].kill(t)
	t.Logf("%s: leader %s killed", time.Since(start).Round(time.Millisecond), leader)
	var survivor string
	for _, m := range members {
		if m.name != leader {
			survivor = m.grpc
			break
		}
	}

	// cell-2 lives in eu-west only: after the change, the us-east edge must send
	// tenant-2 across to eu-west, the nearest region that has an endpoint.
	changed := e2eConfig(backends, true)
	rev2 := applyConfig(t, bin, survivor, changed)
	if rev2 <= rev1 {
		t.Fatalf("second apply got revision %d, not after %d", rev2, rev1)
	}
	t.Logf("%s: changed config applied at revision %d", time.Since(start).Round(time.Millisecond), rev2)
	waitEdgesAt(t, bin, survivor, rev2)
	t.Logf("%s: both edges report revision %d", time.Since(start).Round(time.Millisecond), rev2)
	for region, url := range edges {
		eventually(t, "edge "+region+" routes tenant-2 to eu-west", func() error {
			return expectServed(client, url, "tenant-2", "eu-west")
		})
	}
}

// e2eConfig is the routing config file of the test: cell-1 spans both regions
// and holds tenant-1; withCell2 adds cell-2, in eu-west only, holding tenant-2.
func e2eConfig(backends map[string]string, withCell2 bool) string {
	cfg := fmt.Sprintf(`
regions: [{name: us-east}, {name: eu-west}]
latencies: [{from: us-east, to: eu-west, one_way_ms: 38}]
cells:
  - id: cell-1
    endpoints:
      - {id: us-east-1, url: %q, region: us-east}
      - {id: us-east-2, url: %q, region: us-east}
      - {id: eu-west-1, url: %q, region: eu-west}
      - {id: eu-west-2, url: %q, region: eu-west}
`, backends["us-east-1"], backends["us-east-2"], backends["eu-west-1"], backends["eu-west-2"])
	placements := "placements:\n  - {key: tenant-1, cell: cell-1}\n"
	if withCell2 {
		cfg += fmt.Sprintf("  - id: cell-2\n    endpoints:\n      - {id: eu-west-3, url: %q, region: eu-west}\n", backends["eu-west-3"])
		placements += "  - {key: tenant-2, cell: cell-2}\n"
	}
	return cfg + placements
}

func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgecell")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// process is a child process whose output goes to the test log if the test fails.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProcess(t testing.TB, name, bin string, args ...string) *process {
	t.Helper()
	p := newProcess(name, bin, args...)
	p.start(t)
	return p
}

func newProcess(name, bin string, args ...string) *process {
	return &process{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
}

// start runs p until the test ends (interrupt, then kill after 10s), and
// logs its output if the test failed.
func (p *process) start(t testing.TB) {
	t.Helper()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if p.cmd.Env == nil {
		p.cmd.Env = processEnv(t, p.cmd.Args[1:])
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("---- %s (%s) output:\n%s", p.name, p.cmd.ProcessState, p.out)
		}
	})
}

func (p *process) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// cliRun runs the built binary as an admin client of addr (with the test
// CA's admin certificate).
func cliRun(bin, addr string, stdin string, args ...string) (string, error) {
	admin, err := issueTestFiles(testAdmin)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, append([]string{"--addr", addr, "--timeout", "5s"}, args...)...)
	cmd.Env = append(os.Environ(), tlsEnv(admin)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("edgecell %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func runJSON(t testing.TB, bin, addr string, into proto.Message, args ...string) {
	t.Helper()
	eventually(t, strings.Join(args, " "), func() error {
		out, err := cliRun(bin, addr, "", append(args, "-o", "json")...)
		if err != nil {
			return err
		}
		return protojson.Unmarshal([]byte(out), into)
	})
}

// applyConfig applies cfg with `edgecell apply -f -`, retrying while the cluster
// has no leader, and returns the new revision.
func applyConfig(t testing.TB, bin, addr, cfg string) uint64 {
	t.Helper()
	var resp pb.ApplyConfigResponse
	eventually(t, "apply -f", func() error {
		out, err := cliRun(bin, addr, cfg, "apply", "-f", "-", "-o", "json")
		if err != nil {
			if strings.Contains(err.Error(), "invalid argument") {
				t.Fatalf("config refused: %v", err)
			}
			return err
		}
		return protojson.Unmarshal([]byte(out), &resp)
	})
	return resp.GetRevision()
}

// oneCellCluster starts a one-member coordinator under dir and applies a
// config with one cell in us-east whose endpoint is backendURL, placed at
// tenant-1. It returns the coordinator's gRPC address and the revision.
func oneCellCluster(t testing.TB, bin, dir, backendURL string) (grpcAddr string, rev uint64) {
	t.Helper()
	grpcAddr, raftAddr := freeAddr(t), freeAddr(t)
	startProcess(t, "n1", bin, "coordinator", "--name", "n1", "--region", "us-east",
		"--data-dir", filepath.Join(dir, "n1"), "--grpc-addr", grpcAddr, "--raft-addr", raftAddr,
		"--initial-cluster", "n1="+raftAddr)
	rev = applyConfig(t, bin, grpcAddr, fmt.Sprintf(`
regions: [{name: us-east}]
cells:
  - id: cell-1
    endpoints:
      - {id: us-east-1, url: %q, region: us-east}
placements:
  - {key: tenant-1, cell: cell-1}
`, backendURL))
	return grpcAddr, rev
}

// waitEdgesAt polls `edgecell edges` until both edges are connected and applied rev.
func waitEdgesAt(t testing.TB, bin, addr string, rev uint64) {
	t.Helper()
	eventually(t, fmt.Sprintf("both edges report revision %d", rev), func() error {
		out, err := cliRun(bin, addr, "", "edges", "-o", "json")
		if err != nil {
			return err
		}
		var resp pb.ListEdgesResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			return err
		}
		at := 0
		for _, e := range resp.GetEdges() {
			if e.GetConnected() && e.GetAppliedRevision() >= rev {
				at++
			}
		}
		if at < 2 {
			return fmt.Errorf("edges: %s", out)
		}
		return nil
	})
}

// expectServed checks that the edge at url proxies key with 200 to an endpoint in region.
func expectServed(client *http.Client, url, key, region string) error {
	req, err := http.NewRequest(http.MethodGet, url+"/hello?x=1", nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Routing-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var reply struct{ Endpoint, Region, Path string }
	if err := json.Unmarshal(body, &reply); err != nil {
		return fmt.Errorf("body %q: %v", body, err)
	}
	served := resp.Header.Get("X-Edge-Endpoint")
	if reply.Region != region || reply.Path != "/hello" || served != reply.Endpoint+"@"+region {
		return fmt.Errorf("served by %q (X-Edge-Endpoint %q) for path %q, want region %s", reply.Endpoint, served, reply.Path, region)
	}
	if ray := resp.Header.Get("X-Edge-Ray"); ray == "" {
		return fmt.Errorf("no X-Edge-Ray header")
	}
	return nil
}

func echoBackend(id, region string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"endpoint": id, "region": region, "path": r.URL.Path})
	})
}

// eventually polls f until it returns nil, failing the test with f's last error
// after e2eDeadline.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	testutil.Eventually(t, e2eDeadline, func() error {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}
