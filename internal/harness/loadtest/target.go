package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/pki"
)

// Target is the cluster under test.
type Target struct {
	// Edges maps each region to its edge's base URL; every client region
	// must have one.
	Edges map[string]string
	// Latencies is the routing config's latency matrix, used to order the
	// other regions' edges for failover. Nil: the other regions in name order.
	Latencies []*pb.Latency
	// Admin is an AdminService client, needed for signed requests when no key
	// is given (a key is created and revoked at the end) and for
	// churn-placements. Nil: neither is available.
	Admin pb.AdminServiceClient
	// Controller controls the cluster's processes, for fault steps. Nil: fault
	// steps that need it are refused before the run starts.
	Controller Controller
	// PlainKey and SignedKey are the routing keys of the plain and the signed
	// requests (defaults: DevPlainKey and DevSignedKey).
	PlainKey, SignedKey string
	// KeyID and Secret sign requests; empty: a key is created through Admin.
	KeyID, Secret string
	// JWTKey is the routing key of jwt requests (a cell with AUTH_MODE_JWT),
	// and JWTToken gives the bearer token of each; both are needed for jwt
	// requests.
	JWTKey   string
	JWTToken func() (string, error)
	// Watchers are EdgeService clients of the coordinators (any order): with
	// them the run follows the breaker history and checks that no request
	// was routed to an endpoint whose breaker was open at that revision.
	// Nil: that invariant is not checked.
	Watchers []pb.EdgeServiceClient
}

// Controller controls the processes of a cluster, for fault steps.
type Controller interface {
	// KillLeader kills the current coordinator leader and returns its name.
	KillLeader(ctx context.Context) (string, error)
	// RestartCoordinators restarts every killed coordinator and returns their names.
	RestartCoordinators(ctx context.Context) ([]string, error)
	// StopBackends stops every backend of region; StartBackends starts them again.
	StopBackends(region string) error
	StartBackends(region string) error
	// KillEdge stops the edge of region for good.
	KillEdge(region string) error
	// AppliedRevision is the lowest revision the running edges applied.
	AppliedRevision() uint64
	// WaitEdges blocks until every running edge applied rev.
	WaitEdges(ctx context.Context, rev uint64) error
}

// Partitioner is implemented by the Controllers that can cut links between
// regions: those of a dev cluster that simulates latency.
type Partitioner interface {
	// PartitionRegion cuts region off from every other region and returns
	// how many open connections it cut.
	PartitionRegion(region string) (int, error)
	// HealPartitions ends every partition.
	HealPartitions() error
}

// Routing keys and cells of the dev cluster config (DevConfig, DevConfigJWT).
const (
	DevPlainKey   = "tenant-1"
	DevSignedKey  = "signed-1"
	DevSignedCell = "cell-signed"
	DevJWTKey     = "jwt-1"
	DevJWTCell    = "cell-jwt"
)

// DevConfig is devcluster.SampleConfig plus DevSignedCell: a cell with
// AUTH_MODE_HMAC and an endpoint in every region (the first demo backend of
// each, under its own endpoint id), with DevSignedKey placed on it.
func DevConfig(backends []devcluster.Backend) *pb.RoutingConfig {
	cfg := devcluster.SampleConfig(backends)
	addAuthCell(cfg, backends, DevSignedCell, DevSignedKey, "signed-", &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC})
	return cfg
}

// DevConfigJWT is DevConfig plus DevJWTCell, built the same way with
// AUTH_MODE_JWT trusting iss, with DevJWTKey placed on it.
func DevConfigJWT(iss *Issuer) func([]devcluster.Backend) *pb.RoutingConfig {
	return func(backends []devcluster.Backend) *pb.RoutingConfig {
		cfg := DevConfig(backends)
		addAuthCell(cfg, backends, DevJWTCell, DevJWTKey, "jwt-", &pb.AuthPolicy{
			Mode: pb.AuthMode_AUTH_MODE_JWT,
			Jwt:  &pb.JwtPolicy{Issuer: DevJWTIssuer, Audience: DevJWTAudience, JwksUrl: iss.JWKSURL()},
		})
		return cfg
	}
}

// addAuthCell adds cell id with auth and the first demo backend of every
// region (endpoint ids prefixed with prefix), and places key on it.
func addAuthCell(cfg *pb.RoutingConfig, backends []devcluster.Backend, id, key, prefix string, auth *pb.AuthPolicy) {
	cell := &pb.Cell{Id: id, Auth: auth}
	for _, b := range backends {
		if b.ID == b.Region+"-1" {
			cell.Endpoints = append(cell.Endpoints, &pb.Endpoint{Id: prefix + b.ID, Url: b.URL, Region: b.Region})
		}
	}
	cfg.Cells = append(cfg.Cells, cell)
	cfg.Placements = append(cfg.Placements, &pb.Placement{Key: key, Cell: id})
}

// observerIdentity is who the load tool watches the breakers as: an edge
// of its own, apart from the real ones.
var observerIdentity = pki.Identity{Role: pki.RoleEdge, Name: observerEdge, Region: observerRegion}

// DevTarget is the Target of a running dev cluster started with DevConfig.
func DevTarget(c *devcluster.Cluster) (Target, error) {
	admin, err := c.Admin(c.Members()[0].Name)
	if err != nil {
		return Target{}, err
	}
	var ctl Controller = &devController{c: c, killedEdges: map[string]bool{}}
	if c.Network() != nil {
		ctl = devPartitioner{ctl.(*devController)}
	}
	var watchers []pb.EdgeServiceClient
	creds, err := c.Credentials(observerIdentity)
	if err != nil {
		return Target{}, err
	}
	for _, addr := range c.CoordinatorAddrs() {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return Target{}, err
		}
		watchers = append(watchers, pb.NewEdgeServiceClient(conn))
	}
	return Target{
		Watchers:   watchers,
		Edges:      c.EdgeURLs(),
		Latencies:  DevConfig(c.Backends()).GetLatencies(),
		Admin:      admin,
		Controller: ctl,
		PlainKey:   DevPlainKey,
		SignedKey:  DevSignedKey,
	}, nil
}

// devPartitioner is the Controller of a dev cluster that simulates latency.
type devPartitioner struct{ *devController }

func (d devPartitioner) PartitionRegion(region string) (int, error) {
	return d.c.PartitionRegion(region)
}

func (d devPartitioner) HealPartitions() error { return d.c.HealPartitions() }

// devController is the Controller of an in-process dev cluster.
type devController struct {
	c *devcluster.Cluster

	mu          sync.Mutex
	killed      []string
	killedEdges map[string]bool
}

func (d *devController) KillLeader(ctx context.Context) (string, error) {
	leader, err := d.c.WaitLeader(ctx)
	if err != nil {
		return "", err
	}
	if err := d.c.KillCoordinator(leader); err != nil {
		return "", err
	}
	d.mu.Lock()
	d.killed = append(d.killed, leader)
	d.mu.Unlock()
	return leader, nil
}

func (d *devController) RestartCoordinators(ctx context.Context) ([]string, error) {
	d.mu.Lock()
	killed := d.killed
	d.killed = nil
	d.mu.Unlock()
	var errs []error
	for _, name := range killed {
		errs = append(errs, d.c.RestartCoordinator(ctx, name))
	}
	return killed, errors.Join(errs...)
}

func (d *devController) backends(region string, f func(id string) error) error {
	n := 0
	var errs []error
	for _, b := range d.c.Backends() {
		if b.Region == region {
			n++
			errs = append(errs, f(b.ID))
		}
	}
	if n == 0 {
		return fmt.Errorf("region %q has no backends (regions: %v)", region, devcluster.Regions())
	}
	return errors.Join(errs...)
}

func (d *devController) StopBackends(region string) error {
	return d.backends(region, d.c.StopBackend)
}

func (d *devController) StartBackends(region string) error {
	return d.backends(region, d.c.StartBackend)
}

func (d *devController) KillEdge(region string) error {
	for _, e := range d.c.Edges() {
		if e.Region() == region {
			d.mu.Lock()
			d.killedEdges[region] = true
			d.mu.Unlock()
			return e.Close()
		}
	}
	return fmt.Errorf("region %q has no edge (regions: %v)", region, devcluster.Regions())
}

func (d *devController) AppliedRevision() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var low uint64
	first := true
	for _, e := range d.c.Edges() {
		if d.killedEdges[e.Region()] {
			continue
		}
		if r := e.Revision(); first || r < low {
			low, first = r, false
		}
	}
	return low
}

func (d *devController) WaitEdges(ctx context.Context, rev uint64) error {
	return d.c.WaitEdges(ctx, rev)
}

// failoverOrder is, for each region, every edge region ordered by distance:
// its own first, then by one-way latency (a pair given once applies both
// ways; an explicit reverse entry wins), ties and unknowns by name.
func failoverOrder(edges map[string]string, lat []*pb.Latency) map[string][]string {
	dist := map[[2]string]uint32{}
	for _, l := range lat {
		if _, ok := dist[[2]string{l.GetTo(), l.GetFrom()}]; !ok {
			dist[[2]string{l.GetTo(), l.GetFrom()}] = l.GetOneWayMs()
		}
	}
	for _, l := range lat {
		dist[[2]string{l.GetFrom(), l.GetTo()}] = l.GetOneWayMs()
	}
	var regions []string
	for r := range edges {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	out := map[string][]string{}
	for _, from := range regions {
		order := []string{from}
		var others []string
		for _, r := range regions {
			if r != from {
				others = append(others, r)
			}
		}
		sort.SliceStable(others, func(i, j int) bool {
			di, iok := dist[[2]string{from, others[i]}]
			dj, jok := dist[[2]string{from, others[j]}]
			if iok != jok {
				return iok
			}
			return di < dj
		})
		out[from] = append(order, others...)
	}
	return out
}
