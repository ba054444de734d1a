//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/freeport"
	"github.com/edgecell/edgecell/internal/pki"
)

// Regions of the cluster: one coordinator and one edge in each.
var regions = []string{"us-east", "eu-west", "ap-south"}

// coordinatorArgs make raft snapshot and compact its log every few hundred
// entries (each nonce check is one), so kills also land during those.
var coordinatorArgs = []string{"--snapshot-threshold", "256", "--trailing-logs", "64", "--snapshot-interval", "500ms"}

// member is one coordinator.
type member struct {
	*proc
	region, grpcAddr, raftAddr string
	conn                       *grpc.ClientConn
	admin                      pb.AdminServiceClient
}

// edge is one edge node.
type edge struct {
	*proc
	region, url, adminURL string
	client                *http.Client
}

// Cluster is the system under test: its processes, the clients the
// workloads use, and what the nemesis needs to know (who is alive, the
// network cutter when there is one).
type Cluster struct {
	dir     string
	rec     *recorder
	logf    func(format string, args ...any)
	members []*member
	edges   []*edge
	net     *netCutter // nil when partitions are unavailable (not root, no iptables)
	pki     *clusterPKI

	keyID, secret string

	mu        sync.Mutex
	live      map[string][]Interval
	liveSince map[string]time.Duration // edges up and ready now, since when
	targets   []string                 // what the failpoint running now acted on
	ports     map[string]bool          // addresses handed out, bound or not yet
}

// uidBase is the first uid coordinators run as when partitions are
// available (one uid each, for iptables' owner match); distinct from the
// partition test's in cmd/edgecell.
const uidBase = 62001

// startCluster starts three coordinators in dir and waits for a leader
// that knows every member's gRPC address.
func startCluster(ctx context.Context, dir, bin string, rec *recorder, cut *netCutter, logf func(string, ...any)) (*Cluster, error) {
	c := &Cluster{dir: dir, rec: rec, logf: logf, net: cut, live: map[string][]Interval{}, liveSince: map[string]time.Duration{}, ports: map[string]bool{}}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	var err error
	if c.pki, err = newClusterPKI(dir); err != nil {
		return nil, err
	}
	creds, err := c.pki.adminCreds()
	if err != nil {
		return nil, err
	}
	var initial []string
	for i, region := range regions {
		name := fmt.Sprintf("n%d", i+1)
		grpcAddr, err := c.freeAddr()
		if err != nil {
			return nil, err
		}
		raftAddr, err := c.freeAddr()
		if err != nil {
			return nil, err
		}
		m := &member{proc: &proc{name: name, bin: bin, logPath: filepath.Join(dir, "logs", name+".log")},
			region: region, grpcAddr: grpcAddr, raftAddr: raftAddr}
		if cut != nil {
			m.uid = uidBase + i
		}
		c.members = append(c.members, m)
		initial = append(initial, name+"="+raftAddr)
	}
	for _, m := range c.members {
		data := filepath.Join(dir, m.name)
		if err := os.Mkdir(data, 0o700); err != nil {
			return nil, err
		}
		if m.uid != 0 {
			if err := os.Chown(data, m.uid, m.uid); err != nil {
				return nil, err
			}
		}
		m.args = append([]string{"coordinator", "--name", m.name, "--region", m.region, "--data-dir", data,
			"--grpc-addr", m.grpcAddr, "--raft-addr", m.raftAddr, "--initial-cluster", strings.Join(initial, ",")}, coordinatorArgs...)
		if m.env, err = c.pki.env(pki.Identity{Role: pki.RoleCoordinator, Name: m.name}, m.uid); err != nil {
			return nil, err
		}
		if err := m.start(); err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(m.grpcAddr, grpc.WithTransportCredentials(creds),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}, MinConnectTimeout: time.Second}))
		if err != nil {
			return nil, err
		}
		m.conn, m.admin = conn, pb.NewAdminServiceClient(conn)
	}
	err = poll(ctx, 60*time.Second, func() error {
		st, err := c.status(ctx, c.members[0])
		if err != nil {
			return err
		}
		if st.GetLeader() == "" || len(st.GetMembers()) != len(c.members) {
			return fmt.Errorf("no leader with %d members yet", len(c.members))
		}
		for _, ms := range st.GetMembers() {
			if ms.GetGrpcAddr() == "" {
				return fmt.Errorf("member %s has not registered its gRPC address", ms.GetName())
			}
		}
		return nil
	})
	return c, err
}

// freeAddr is a free loopback address not handed out before in this run:
// freeport checks that nothing listens, and the addresses of processes not
// started yet are not listened on.
func (c *Cluster) freeAddr() (string, error) {
	for range 100 {
		addr, err := freeport.Loopback()
		if err != nil {
			return "", err
		}
		if !c.ports[addr] {
			c.ports[addr] = true
			return addr, nil
		}
	}
	return "", errors.New("no fresh free loopback port")
}

// startEdges starts one edge per region and waits until each serves.
func (c *Cluster) startEdges(ctx context.Context, bin string) error {
	var coords []string
	for _, m := range c.members {
		coords = append(coords, m.grpcAddr)
	}
	for _, region := range regions {
		name := "edge-" + region
		listen, err := c.freeAddr()
		if err != nil {
			return err
		}
		admin, err := c.freeAddr()
		if err != nil {
			return err
		}
		e := &edge{proc: &proc{name: name, bin: bin, logPath: filepath.Join(c.dir, "logs", name+".log"),
			args: []string{"edge", "--name", name, "--region", region, "--data-dir", filepath.Join(c.dir, name),
				"--listen", listen, "--admin-listen", admin, "--coordinators", strings.Join(coords, ",")}},
			region: region, url: "http://" + listen, adminURL: "http://" + admin,
			client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}}}
		if e.env, err = c.pki.env(pki.Identity{Role: pki.RoleEdge, Name: name, Region: region}, 0); err != nil {
			return err
		}
		c.edges = append(c.edges, e)
		if err := e.start(); err != nil {
			return err
		}
	}
	for _, e := range c.edges {
		if err := c.waitReady(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// waitReady polls the edge's /readyz until it has a routing table, then
// counts it as live from now on.
func (c *Cluster) waitReady(ctx context.Context, e *edge) error {
	err := poll(ctx, 30*time.Second, func() error {
		if !e.running() {
			return fmt.Errorf("%s is not running", e.name)
		}
		resp, err := e.client.Get(e.adminURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %s", e.name, resp.Status)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.liveSince[e.region] = c.rec.now()
	c.mu.Unlock()
	return nil
}

// edgeDown ends the edge's live interval: call it before killing it.
func (c *Cluster) edgeDown(e *edge) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if since, ok := c.liveSince[e.region]; ok {
		c.live[e.region] = append(c.live[e.region], Interval{since, c.rec.now()})
		delete(c.liveSince, e.region)
	}
}

// liveIntervals closes the open intervals at now and returns them all.
func (c *Cluster) liveIntervals() map[string][]Interval {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.rec.now()
	out := map[string][]Interval{}
	for r, ivs := range c.live {
		out[r] = append([]Interval(nil), ivs...)
	}
	for r, since := range c.liveSince {
		out[r] = append(out[r], Interval{since, now})
	}
	return out
}

// target records what the running failpoint acts on.
func (c *Cluster) target(format string, args ...any) {
	c.mu.Lock()
	c.targets = append(c.targets, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

func (c *Cluster) takeTargets() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.Join(c.targets, ", ")
	c.targets = nil
	return s
}

func (c *Cluster) status(ctx context.Context, m *member) (*pb.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return m.admin.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
}

func (c *Cluster) member(name string) *member {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	return nil
}

// leader asks the usable members who leads, polling until one names a
// leader that is itself usable.
func (c *Cluster) leader(ctx context.Context) (*member, error) {
	var l *member
	err := poll(ctx, 20*time.Second, func() error {
		for _, m := range c.members {
			if !m.usable() {
				continue
			}
			st, err := c.status(ctx, m)
			if err != nil || st.GetLeader() == "" {
				continue
			}
			if l = c.member(st.GetLeader()); l != nil && l.usable() {
				return nil
			}
		}
		return errors.New("no member names a usable leader")
	})
	return l, err
}

// follower picks a usable member that is not the leader.
func (c *Cluster) follower(ctx context.Context, rng *rand.Rand) (*member, error) {
	l, err := c.leader(ctx)
	if err != nil {
		return nil, err
	}
	var fs []*member
	for _, m := range c.members {
		if m != l && m.usable() {
			fs = append(fs, m)
		}
	}
	if len(fs) == 0 {
		return nil, errors.New("no usable follower")
	}
	return fs[rng.IntN(len(fs))], nil
}

// waitMemberUp polls until m answers ClusterStatus.
func (c *Cluster) waitMemberUp(ctx context.Context, m *member) error {
	return poll(ctx, 30*time.Second, func() error {
		if !m.running() {
			return fmt.Errorf("%s exited", m.name)
		}
		_, err := c.status(ctx, m)
		return err
	})
}

// waitHealthy waits until every process runs, the members agree on a
// leader, each has applied what the leader had committed when the wait
// began, and every edge is ready and connected.
func (c *Cluster) waitHealthy(ctx context.Context, timeout time.Duration) error {
	var target uint64
	return poll(ctx, timeout, func() error {
		for _, m := range c.members {
			if !m.usable() {
				return fmt.Errorf("%s is not running", m.name)
			}
		}
		st, err := c.status(ctx, c.members[0])
		if err != nil {
			return fmt.Errorf("cluster status: %w", err)
		}
		if st.GetLeader() == "" {
			return errors.New("no leader")
		}
		for _, ms := range st.GetMembers() {
			if ms.GetName() == st.GetLeader() && target == 0 {
				target = ms.GetCommitIndex()
			}
		}
		for _, ms := range st.GetMembers() {
			if ms.GetRole() == "unreachable" || ms.GetAppliedIndex() < target {
				return fmt.Errorf("member %s is %s at applied index %d, want %d", ms.GetName(), ms.GetRole(), ms.GetAppliedIndex(), target)
			}
		}
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		edges, err := c.members[0].admin.ListEdges(ctx, &pb.ListEdgesRequest{})
		if err != nil {
			return fmt.Errorf("list edges: %w", err)
		}
		connected := map[string]bool{}
		for _, e := range edges.GetEdges() {
			connected[e.GetName()] = e.GetConnected()
		}
		for _, e := range c.edges {
			c.mu.Lock()
			_, ready := c.liveSince[e.region]
			c.mu.Unlock()
			if !e.usable() || !ready || !connected[e.name] {
				return fmt.Errorf("%s: running %v, ready %v, connected %v", e.name, e.usable(), ready, connected[e.name])
			}
		}
		return nil
	})
}

// waitEdgesAt waits until every edge acknowledged revision rev.
func (c *Cluster) waitEdgesAt(ctx context.Context, rev uint64) error {
	return poll(ctx, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := c.members[0].admin.ListEdges(ctx, &pb.ListEdgesRequest{})
		if err != nil {
			return err
		}
		at := 0
		for _, e := range resp.GetEdges() {
			if e.GetConnected() && e.GetAppliedRevision() >= rev {
				at++
			}
		}
		if at < len(c.edges) {
			return fmt.Errorf("%d of %d edges at revision %d", at, len(c.edges), rev)
		}
		return nil
	})
}

// close ends every process and connection.
func (c *Cluster) close() {
	var wg sync.WaitGroup
	for _, p := range c.procs() {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	for _, m := range c.members {
		if m.conn != nil {
			m.conn.Close()
		}
	}
	for _, e := range c.edges {
		e.client.CloseIdleConnections()
	}
}

func (c *Cluster) procs() []*proc {
	var ps []*proc
	for _, m := range c.members {
		ps = append(ps, m.proc)
	}
	for _, e := range c.edges {
		ps = append(ps, e.proc)
	}
	return ps
}

// poll calls f until it returns nil, ctx ends or timeout passes; the error
// is f's last.
func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		time.Sleep(wait) // the polling interval: f decides
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// sleep waits d (a step of the fault schedule, not synchronisation) or
// until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// loopbackPort is the port of a host:port address.
func loopbackPort(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
