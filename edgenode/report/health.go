package report

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/health"
	"github.com/edgecell/edgecell/internal/policy"
)

// CheckerConfig configures a Checker. Zero durations take the defaults shown.
type CheckerConfig struct {
	// Edge and Region identify this edge; Region decides what it checks.
	Edge, Region string
	// Table is the routing table the edge serves: its cells' health check
	// policies say what to check and how.
	Table *atomic.Pointer[route.Table]
	// Coordinators is the edge's pool of coordinator connections; results
	// and assignment requests are Followed calls on it.
	Coordinators *coordconn.Pool
	// Interval between result batches, and between looks at the table for
	// new, changed or removed checks. Default 1s.
	Interval time.Duration
	// AssignmentInterval is how often the edge asks which regions have
	// edges. Default 3s: the coordinators answer from a view they refresh
	// every 2s, so asking often is cheap, and a region losing its last edge
	// gets checked from elsewhere within seconds.
	AssignmentInterval time.Duration
	// RPCTimeout bounds one RPC. Default 2s.
	RPCTimeout time.Duration
	// DialContext opens check connections; nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger; nil discards.
	Logger *slog.Logger
}

// maxPending caps the results one endpoint keeps while the coordinators
// cannot be reached; the oldest go first. More would not change a verdict:
// thresholds only look at the current run.
const maxPending = 32

// Checker runs the active health checks this edge is assigned and reports
// their results in batches; see the package doc.
type Checker struct {
	cfg    CheckerConfig
	log    *slog.Logger
	probes *prober
	rpc    caller

	// regions are the regions with edges, from the last CheckAssignment;
	// nil until one answered, when only the own region is checked.
	regions   atomic.Pointer[[]string]
	regionsAt time.Time // Run's goroutine only

	running map[string]*check // by endpoint id; Run's goroutine only
	wg      sync.WaitGroup

	mu      sync.Mutex
	pending map[string][]*pb.CheckResult

	out *outbox[[]*pb.EndpointChecks]
}

// check is one endpoint's running check loop.
type check struct {
	spec   policy.Check
	ep     *route.Endpoint
	cancel context.CancelFunc
}

// NewChecker returns a Checker; Run starts it.
func NewChecker(cfg CheckerConfig) *Checker {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.AssignmentInterval <= 0 {
		cfg.AssignmentInterval = 3 * time.Second
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = 2 * time.Second
	}
	if cfg.DialContext == nil {
		cfg.DialContext = (&net.Dialer{}).DialContext
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checker{
		cfg: cfg, log: cfg.Logger, probes: newProber("edgecell-check/"+cfg.Edge, cfg.DialContext),
		rpc:     caller{coords: cfg.Coordinators, timeout: cfg.RPCTimeout},
		running: map[string]*check{}, pending: map[string][]*pb.CheckResult{},
	}
	c.out = &outbox[[]*pb.EndpointChecks]{what: "health", log: cfg.Logger, now: time.Now, send: c.sendBatch, giveBack: c.giveBack}
	return c
}

// Run checks and reports until ctx ends, then stops every check, sends the
// results not yet reported (bounded by RPCTimeout) and returns nil.
func (c *Checker) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.refreshAssignment(ctx)
		c.Reconcile(ctx)
		select {
		case <-ctx.Done():
			for id, r := range c.running {
				r.cancel()
				delete(c.running, id)
			}
			c.wg.Wait()
			fctx, cancel := context.WithTimeout(context.Background(), c.cfg.RPCTimeout)
			c.Flush(fctx)
			cancel()
			return nil
		case <-t.C:
			c.Flush(ctx)
		}
	}
}

// refreshAssignment asks which regions have edges when the last answer is
// older than AssignmentInterval. On failure the last answer stays.
func (c *Checker) refreshAssignment(ctx context.Context) {
	if !c.regionsAt.IsZero() && time.Since(c.regionsAt) < c.cfg.AssignmentInterval {
		return
	}
	var resp *pb.CheckAssignmentResponse
	err := c.rpc.call(ctx, func(ctx context.Context, cl pb.EdgeServiceClient) (err error) {
		resp, err = cl.CheckAssignment(ctx, &pb.CheckAssignmentRequest{Edge: c.cfg.Edge, Region: c.cfg.Region})
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("health check assignment unavailable; keeping the last one", "err", err)
		}
		return
	}
	regions := resp.GetEdgeRegions()
	if regions == nil {
		regions = []string{c.cfg.Region}
	}
	if old := c.regions.Load(); old == nil || !slices.Equal(*old, regions) {
		c.log.Info("health check assignment", "regions_with_edges", regions)
	}
	c.regions.Store(&regions)
	c.regionsAt = time.Now()
}

// Assigned returns the ids of the endpoints this edge checks now, sorted.
func (c *Checker) Assigned() []string {
	targets := c.targets()
	ids := make([]string, 0, len(targets))
	for id := range targets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// targets maps each endpoint this edge must check to its check, from the
// current table and assignment. An endpoint in several cells (ids are
// unique, so only through a config race) takes the first cell's policy by id.
func (c *Checker) targets() map[string]check {
	self := health.Node{ID: c.cfg.Edge, Region: c.cfg.Region}
	regions := c.regions.Load()
	var edges []health.Node
	for _, r := range deref(regions) {
		edges = append(edges, health.Node{ID: "region " + r, Region: r})
	}
	byID := map[string]route.CellGate{}
	var nodes []health.Node
	for _, cg := range c.cfg.Table.Load().Gates() {
		if cg.Cell.Source().GetHealthCheck() == nil {
			continue
		}
		// Until the first assignment, only the own region: checking every
		// other region on a guess would load their endpoints for nothing.
		if regions == nil && cg.Endpoint.Region != c.cfg.Region {
			continue
		}
		if prev, ok := byID[cg.Endpoint.ID]; !ok || cg.Cell.ID() < prev.Cell.ID() {
			byID[cg.Endpoint.ID] = cg
		}
		nodes = append(nodes, health.Node{ID: cg.Endpoint.ID, Region: cg.Endpoint.Region})
	}
	out := map[string]check{}
	for _, id := range health.ChecksFor(self, edges, nodes) {
		cg := byID[id]
		out[id] = check{spec: cg.Cell.Policy().Check, ep: cg.Endpoint}
	}
	return out
}

func deref(p *[]string) []string {
	if p == nil {
		return nil
	}
	return *p
}

// Reconcile starts the checks the table and assignment call for, restarts
// those whose policy or URL changed and stops the others. Run calls it
// every Interval; it must not be called concurrently with Run.
func (c *Checker) Reconcile(ctx context.Context) {
	want := c.targets()
	for id, r := range c.running {
		if w, ok := want[id]; !ok || w.spec != r.spec || w.ep.URL != r.ep.URL {
			r.cancel()
			delete(c.running, id)
		}
	}
	for id, w := range want {
		if _, ok := c.running[id]; ok {
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		r := &check{spec: w.spec, ep: w.ep, cancel: cancel}
		c.running[id] = r
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.loop(cctx, r)
		}()
	}
}

// loop checks one endpoint every Interval plus jitter until ctx ends. The
// first check waits a random part of an interval, so that edges restarted
// together do not check in step.
func (c *Checker) loop(ctx context.Context, r *check) {
	delay := rand.N(r.spec.Interval)
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ok, detail := c.probes.get(ctx, r.ep, r.spec.Path, r.spec.Timeout, true)
		if ctx.Err() != nil {
			return // stopped mid-check: the result says nothing about the endpoint
		}
		c.record(r.ep.ID, &pb.CheckResult{Ok: ok, Detail: detail})
		delay = r.spec.Interval
		if r.spec.Jitter > 0 {
			delay += rand.N(r.spec.Jitter + 1)
		}
	}
}

func (c *Checker) record(id string, res *pb.CheckResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending[id] = appendCapped(c.pending[id], res)
}

// appendCapped appends and keeps the newest maxPending results.
func appendCapped(rs []*pb.CheckResult, more ...*pb.CheckResult) []*pb.CheckResult {
	rs = append(rs, more...)
	if len(rs) > maxPending {
		rs = slices.Delete(rs, 0, len(rs)-maxPending)
	}
	return rs
}

// Flush reports health check results in numbered batches (see outbox):
// first it resends, with the same batch id, a batch whose outcome is
// unknown, then sends one new batch with the results gathered since the
// last one, for endpoints still in the table. A batch the coordinators
// refused gives its results back for the next batch (the newest
// maxPending per endpoint). The first failure is logged and returned;
// nothing newer is sent after it. Nothing to send: no RPC, nil.
func (c *Checker) Flush(ctx context.Context) error {
	return c.out.flush(ctx, c.take)
}

// take moves the pending results of endpoints in the table into a batch,
// by endpoint; results of endpoints no longer in the table are dropped.
func (c *Checker) take() ([]*pb.EndpointChecks, bool) {
	c.mu.Lock()
	taken := c.pending
	c.pending = map[string][]*pb.CheckResult{}
	c.mu.Unlock()
	if len(taken) == 0 {
		return nil, false
	}
	batch := make([]*pb.EndpointChecks, 0, len(taken))
	for _, cg := range c.cfg.Table.Load().Gates() {
		if rs, ok := taken[cg.Endpoint.ID]; ok {
			batch = append(batch, &pb.EndpointChecks{Endpoint: cg.Endpoint.ID, Results: rs})
			delete(taken, cg.Endpoint.ID)
		}
	}
	slices.SortFunc(batch, func(a, b *pb.EndpointChecks) int { return strings.Compare(a.GetEndpoint(), b.GetEndpoint()) })
	return batch, len(batch) > 0
}

func (c *Checker) sendBatch(ctx context.Context, batch []*pb.EndpointChecks, id uint64) error {
	return c.rpc.call(ctx, func(ctx context.Context, cl pb.EdgeServiceClient) error {
		_, err := cl.ReportHealth(ctx, &pb.ReportHealthRequest{Edge: c.cfg.Edge, Region: c.cfg.Region, Checks: batch, BatchId: id})
		return err
	})
}

// giveBack puts a refused batch's results in front of those gathered since.
func (c *Checker) giveBack(batch []*pb.EndpointChecks) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ec := range batch {
		c.pending[ec.GetEndpoint()] = appendCapped(ec.GetResults(), c.pending[ec.GetEndpoint()]...)
	}
}
