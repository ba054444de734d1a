package devcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// ErrUnknownMember is returned for a coordinator name that is not n1, n2 or n3.
var ErrUnknownMember = errors.New("devcluster: no such coordinator")

// ErrNoCoordinator is returned when every coordinator is killed.
var ErrNoCoordinator = errors.New("devcluster: no coordinator is running")

func (c *Cluster) startCoordinators(ctx context.Context, members []Member) error {
	initial := map[string]string{}
	members = append([]Member(nil), members...)
	for i, m := range members {
		initial[m.Name] = m.RaftAddr
		addr, err := c.fixedAddr(m.GRPCAddr)
		if err != nil {
			return fmt.Errorf("devcluster: coordinator %s: %w", m.Name, err)
		}
		members[i].GRPCAddr = addr
		if c.simnet != nil {
			c.simnet.Register(m.RaftAddr, m.Region)
			c.simnet.Register(addr, m.Region)
		}
	}
	c.mu.Lock()
	c.members = append([]Member(nil), members...)
	c.mu.Unlock()
	for i, m := range members {
		dir := c.memberDir(m.Name)
		bootstrap := initial
		if hasData(dir) {
			bootstrap = nil // a restart: raft state is on disk
		}
		co, err := coordinator.Start(ctx, c.coordinatorConfig(m, bootstrap))
		if err != nil {
			return fmt.Errorf("devcluster: coordinator %s: %w", m.Name, err)
		}
		c.mu.Lock()
		c.coords[m.Name] = co
		c.members[i].GRPCAddr = co.GRPCAddr() // the port chosen, when it was 0
		c.members[i].RaftAddr = co.RaftAddr()
		c.mu.Unlock()
	}
	return nil
}

func (c *Cluster) coordinatorConfig(m Member, initial map[string]string) coordinator.Config {
	return coordinator.Config{
		Name: m.Name, Region: m.Region, DataDir: c.memberDir(m.Name),
		GRPCAddr: m.GRPCAddr, RaftAddr: m.RaftAddr, InitialCluster: initial,
		Logger: c.log.With("region", m.Region),
		Raft:   c.simulatedRaft(),
		Dial:   c.dialer(m.Region, nil),
		TLS:    c.source(m.Name),
	}
}

func (c *Cluster) memberDir(name string) string { return filepath.Join(c.dataDir, name) }

func hasData(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) > 0
}

// KillCoordinator stops the named coordinator (n1, n2 or n3) as a crash would
// look to its peers and edges; its data stays for RestartCoordinator. Killing a
// killed coordinator does nothing.
func (c *Cluster) KillCoordinator(name string) error {
	c.mu.Lock()
	co, ok := c.coords[name]
	c.coords[name] = nil
	conn := c.conns[name]
	delete(c.conns, name)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	if conn != nil {
		conn.Close()
	}
	if co == nil {
		return nil
	}
	return co.Close()
}

// RestartCoordinator starts a killed coordinator again on its old addresses,
// from its data. It returns once the member serves gRPC, not once it caught up.
func (c *Cluster) RestartCoordinator(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	co, ok := c.coords[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	if co != nil {
		return fmt.Errorf("devcluster: coordinator %s is running", name)
	}
	for _, m := range c.members {
		if m.Name == name {
			co, err := coordinator.Start(ctx, c.coordinatorConfig(m, nil))
			if err != nil {
				return fmt.Errorf("devcluster: restart %s: %w", name, err)
			}
			c.coords[name] = co
		}
	}
	return nil
}

// Admin is an AdminService client of the named coordinator. The connection is
// the cluster's: it stays valid until the coordinator is killed or the cluster
// closed.
func (c *Cluster) Admin(name string) (pb.AdminServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn, ok := c.conns[name]; ok {
		return pb.NewAdminServiceClient(conn), nil
	}
	co, ok := c.coords[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q", ErrUnknownMember, name)
	case co == nil:
		return nil, fmt.Errorf("devcluster: coordinator %s is killed", name)
	}
	conn, err := grpc.NewClient(co.GRPCAddr(), grpc.WithTransportCredentials(c.ClientCreds("admin")))
	if err != nil {
		return nil, err
	}
	c.conns[name] = conn
	return pb.NewAdminServiceClient(conn), nil
}

// anyAdmin is a client of the first running coordinator.
func (c *Cluster) anyAdmin() (pb.AdminServiceClient, error) {
	for _, m := range c.Members() {
		if a, err := c.Admin(m.Name); err == nil {
			return a, nil
		}
	}
	return nil, ErrNoCoordinator
}

// WaitLeader blocks until a running coordinator reports a running leader,
// and returns the leader's name. Right after KillCoordinator of the leader,
// survivors still name it for an election timeout; WaitLeader waits past that.
func (c *Cluster) WaitLeader(ctx context.Context) (string, error) {
	var leader string
	err := poll(ctx, func() bool {
		for _, m := range c.Members() {
			a, err := c.Admin(m.Name)
			if err != nil {
				continue
			}
			resp, err := a.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
			if err == nil && resp.GetLeader() != "" && c.running(resp.GetLeader()) {
				leader = resp.GetLeader()
				return true
			}
		}
		return false
	}, func() error { return errors.New("devcluster: no leader elected") })
	return leader, err
}

func (c *Cluster) running(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.coords[name] != nil
}

// waitMembers blocks until a leader reports every member healthy and with its
// gRPC address recorded (members register it once a leader is known), so that
// edges started next find the coordinator of their own region.
func (c *Cluster) waitMembers(ctx context.Context) error {
	var last *pb.ClusterStatusResponse
	return poll(ctx, func() bool {
		a, err := c.anyAdmin()
		if err != nil {
			return false
		}
		if last, err = a.ClusterStatus(ctx, &pb.ClusterStatusRequest{}); err != nil || last.GetLeader() == "" {
			return false
		}
		ready := 0
		for _, m := range last.GetMembers() {
			if m.GetGrpcAddr() != "" && (m.GetRole() == "leader" || m.GetRole() == "follower") {
				ready++
			}
		}
		return ready == len(c.Members())
	}, func() error { return fmt.Errorf("devcluster: members not all up: %v", last.GetMembers()) })
}

// Apply replaces the routing config through the first running coordinator,
// retrying while the cluster answers UNAVAILABLE (no leader yet), and returns
// the revision. It does not wait for the edges: see WaitEdges.
func (c *Cluster) Apply(ctx context.Context, cfg *pb.RoutingConfig) (uint64, error) {
	var rev uint64
	err := retryUnavailable(ctx, func() error {
		a, err := c.anyAdmin()
		if err != nil {
			return err
		}
		resp, err := a.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: cfg})
		rev = resp.GetRevision()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("devcluster: apply config: %w", err)
	}
	c.setLatencies(cfg.GetLatencies())
	return rev, nil
}

// retryUnavailable calls f until it returns anything but an UNAVAILABLE status,
// or ctx ends.
func retryUnavailable(ctx context.Context, f func() error) error {
	var last error
	err := poll(ctx, func() bool {
		last = f()
		return status.Code(last) != codes.Unavailable
	}, func() error { return last })
	if err != nil {
		return err
	}
	return last
}
