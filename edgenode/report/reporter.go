package report

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/breaker"
)

// Config configures a Reporter. Zero durations take the defaults shown.
type Config struct {
	// Edge and Region identify this edge in reports.
	Edge, Region string
	// Table is the routing table the edge serves: only its endpoints are
	// reported (a coordinator refuses a batch naming an unknown one).
	Table *atomic.Pointer[route.Table]
	// Coordinators is the edge's pool of coordinator connections; reports
	// and probes are Followed calls on it.
	Coordinators *coordconn.Pool
	// Interval between outcome batches and probe scans. Default 1s.
	Interval time.Duration
	// RPCTimeout bounds one RPC. Default 2s.
	RPCTimeout time.Duration
	// ProbeTimeout bounds a probe when the cell configures no health check
	// timeout. Default 1s.
	ProbeTimeout time.Duration
	// DialContext opens probe connections; nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Reporter sends outcome batches and runs probes; see the package doc.
type Reporter struct {
	cfg    Config
	log    *slog.Logger
	probes *prober
	rpc    caller
	out    *outbox[outcomeBatch]
	wg     sync.WaitGroup // probes in flight
}

// outcomeBatch is the content of one ReportOutcomes batch and the gates its
// counts were taken from (gates[i] gave outcomes[i]).
type outcomeBatch struct {
	gates    []*route.Gate
	outcomes []*pb.EndpointOutcomes
}

// New returns a Reporter; Run starts it.
func New(cfg Config) *Reporter {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = 2 * time.Second
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = time.Second
	}
	if cfg.DialContext == nil {
		cfg.DialContext = (&net.Dialer{}).DialContext
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reporter{cfg: cfg, log: cfg.Logger, probes: newProber("edgecell-probe/"+cfg.Edge, cfg.DialContext),
		rpc: caller{coords: cfg.Coordinators, timeout: cfg.RPCTimeout}}
	r.out = &outbox[outcomeBatch]{what: "outcome", log: cfg.Logger, now: cfg.Now, send: r.sendBatch,
		giveBack: func(b outcomeBatch) {
			for i, g := range b.gates {
				g.ReturnOutcomes(b.outcomes[i])
			}
		}}
	return r
}

// Run reports every Interval until ctx ends, then sends a last batch
// (bounded by RPCTimeout) and waits for probes in flight. It returns nil.
func (r *Reporter) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	wake := r.cfg.Table.Load().Wake()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), r.cfg.RPCTimeout)
			r.SendOutcomes(fctx)
			cancel()
			r.wg.Wait()
			return nil
		case <-t.C:
			r.SendOutcomes(ctx)
			r.StartProbes(ctx)
		case <-wake:
			// An endpoint tripped locally or reached its failure threshold:
			// the replicated breaker should hear of it now. At most one
			// urgent batch per trip or run, so this cannot flood.
			r.SendOutcomes(ctx)
		}
	}
}

// SendOutcomes reports outcomes in numbered batches (see outbox): first it
// resends, with the same batch id, a batch whose outcome is unknown, then
// sends one new batch with every endpoint of the current table that has
// outcomes since the last batch. A batch the coordinators refused gives
// its counts back to their endpoints for the next batch. The first failure
// is logged and returned; nothing newer is sent after it. No outcomes: no
// RPC, nil.
func (r *Reporter) SendOutcomes(ctx context.Context) error {
	return r.out.flush(ctx, func() (outcomeBatch, bool) {
		var b outcomeBatch
		for _, cg := range r.cfg.Table.Load().Gates() {
			for _, o := range cg.Endpoint.Gate.TakeOutcomes() {
				b.gates = append(b.gates, cg.Endpoint.Gate)
				b.outcomes = append(b.outcomes, o)
			}
		}
		return b, len(b.outcomes) > 0
	})
}

func (r *Reporter) sendBatch(ctx context.Context, b outcomeBatch, id uint64) error {
	return r.rpc.call(ctx, func(ctx context.Context, c pb.EdgeServiceClient) error {
		_, err := c.ReportOutcomes(ctx, &pb.ReportOutcomesRequest{Edge: r.cfg.Edge, Region: r.cfg.Region, Outcomes: b.outcomes, BatchId: id})
		return err
	})
}

// StartProbes starts, for every endpoint whose global breaker is half-open
// and that was not asked for within its probe lease, one goroutine that
// asks for the lease and, if granted, probes and reports. It does not wait.
func (r *Reporter) StartProbes(ctx context.Context) {
	now := r.cfg.Now()
	for _, cg := range r.cfg.Table.Load().Gates() {
		g := cg.Endpoint.Gate
		if s, _ := g.Global(); s != breaker.HalfOpen || !g.ClaimProbe(now, g.ProbeLease()) {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.probe(ctx, cg)
		}()
	}
}

// probe runs the lease, probe, report sequence for one endpoint.
func (r *Reporter) probe(ctx context.Context, cg route.CellGate) {
	ep := cg.Endpoint
	log := r.log.With("endpoint", ep.ID)
	var granted bool
	err := r.rpc.call(ctx, func(ctx context.Context, c pb.EdgeServiceClient) error {
		resp, err := c.AcquireProbe(ctx, &pb.AcquireProbeRequest{Edge: r.cfg.Edge, Endpoint: ep.ID})
		granted = resp.GetGranted()
		return err
	})
	if err != nil || !granted {
		if err != nil {
			log.Warn("probe lease request failed", "err", err)
		}
		return
	}
	ok, detail := r.check(ctx, cg)
	log.Info("probed half-open endpoint", "ok", ok, "detail", detail)
	if err := r.rpc.call(ctx, func(ctx context.Context, c pb.EdgeServiceClient) error {
		_, err := c.ReportProbe(ctx, &pb.ReportProbeRequest{Edge: r.cfg.Edge, Endpoint: ep.ID, Ok: ok, Detail: detail})
		return err
	}); err != nil {
		log.Warn("probe report failed", "err", err)
	}
}

// check sends the probe: GET on the cell's health check path (its timeout)
// when one is configured, where only 2xx passes; else GET / with
// ProbeTimeout, where any answer below 500 passes (the endpoint is up).
func (r *Reporter) check(ctx context.Context, cg route.CellGate) (ok bool, detail string) {
	if cg.Cell.Source().GetHealthCheck() != nil {
		c := &cg.Cell.Policy().Check
		return r.probes.get(ctx, cg.Endpoint, c.Path, c.Timeout, true)
	}
	return r.probes.get(ctx, cg.Endpoint, "/", r.cfg.ProbeTimeout, false)
}

// prober sends the edge's own HTTP requests to endpoints: probes and
// health checks, with User-Agent agent so backends and operators can tell
// them from traffic. It keeps no connections: a check must see a fresh
// connect.
type prober struct {
	client *http.Client
	agent  string
}

func newProber(agent string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *prober {
	return &prober{
		client: &http.Client{
			Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
			// A redirect is an answer: the endpoint is up.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		agent: agent,
	}
}

// get sends GET path to ep within timeout. strict: only a 2xx passes; else
// any answer below 500 does. detail says what was seen ("HTTP 503" or the
// connection error).
func (p *prober) get(ctx context.Context, ep *route.Endpoint, path string, timeout time.Duration, strict bool) (ok bool, detail string) {
	scheme := "http://"
	if ep.TLS {
		scheme = "https://"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+ep.Host+ep.PathPrefix+path, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", p.agent)
	resp, err := p.client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if strict {
		ok = resp.StatusCode >= 200 && resp.StatusCode < 300
	} else {
		ok = resp.StatusCode < 500
	}
	return ok, "HTTP " + strconv.Itoa(resp.StatusCode)
}
