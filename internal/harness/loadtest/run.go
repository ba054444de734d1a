package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
)

// Defaults of Options.
const (
	DefaultMaxInFlight    = 10000
	DefaultRequestTimeout = 5 * time.Second
	DefaultConnsPerEdge   = 128
)

// Options configure Run.
type Options struct {
	Plan   Plan
	Target Target
	// MaxInFlight caps each region's requests in flight (DefaultMaxInFlight).
	MaxInFlight int
	// ConnsPerEdge caps the connections to each edge (DefaultConnsPerEdge);
	// a rate R against latency L needs about R×L of them.
	ConnsPerEdge int
	// RequestTimeout bounds each request, body included (DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Progress receives a progress line every second; nil: none.
	Progress io.Writer
	// ProgressInPlace overwrites the line in place (a terminal) instead of
	// writing one line per second.
	ProgressInPlace bool
	// Logger receives the run's own notes; nil discards them.
	Logger *slog.Logger
}

// ErrBadOptions is matched (errors.Is) by Run's errors about its options:
// the plan, the target, or a step the target cannot run.
var ErrBadOptions = errors.New("loadtest: bad options")

// badOptions reads as its cause and matches ErrBadOptions.
type badOptions struct{ error }

func (badOptions) Is(target error) bool { return target == ErrBadOptions }

// ErrInvariant is wrapped by the error Run's caller gets from Report.Err when
// an invariant was broken.
var ErrInvariant = errors.New("invariant broken")

// runner is one run in progress.
type runner struct {
	opts    Options
	target  Target
	plan    Plan
	start   time.Time
	client  *http.Client
	signer  *hmacsig.Signer
	mix     []Kind
	regions []*regionClient
	edges   map[string]*edge
	replays replayPool

	counters        counters
	replayFallbacks atomic.Int64

	eventsMu sync.Mutex
	events   []Event

	propagation *propagation
	churn       *churnCheck
	breakers    *breakerLog // nil: the breaker invariant is not checked
	log         *slog.Logger
}

func (r *runner) since() time.Duration { return time.Since(r.start) }

// Run validates the plan against the target, prepares (creates an API key
// when signed requests need one and none is given), sends the load, runs the
// fault steps, and returns the report. Bad options are refused before any
// request is sent, naming the offending field. An error after the start
// still comes with the report of what ran. A broken invariant is not an
// error here: see Report.OK and Report.Err.
func Run(ctx context.Context, opts Options) (*Report, error) {
	r, err := newRunner(opts)
	if err != nil {
		return nil, badOptions{err}
	}
	createdKey, err := r.prepareKey(ctx)
	if err != nil {
		return nil, err
	}
	if createdKey != "" {
		defer r.revokeKey(createdKey)
	}
	if r.churn != nil {
		if err := r.churn.prepare(ctx, r.target.Admin); err != nil {
			return nil, err
		}
	}
	return r.run(ctx), nil
}

func newRunner(opts Options) (*runner, error) {
	p, t := opts.Plan, opts.Target
	if p.Duration <= 0 {
		return nil, errors.New("duration: want a positive duration")
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if len(t.Edges) == 0 {
		return nil, errors.New("edges: no edge to send to")
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.ConnsPerEdge <= 0 {
		opts.ConnsPerEdge = DefaultConnsPerEdge
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if t.PlainKey == "" {
		t.PlainKey = DevPlainKey
	}
	if t.SignedKey == "" {
		t.SignedKey = DevSignedKey
	}
	if len(p.Mix) == 0 {
		p.Mix = DefaultMix()
	}
	rates := p.Rates
	if len(rates) == 0 {
		if p.TotalRate <= 0 {
			return nil, errors.New("rate: want a total rate or per-region rates")
		}
		rates = map[string]float64{}
		for region := range t.Edges {
			rates[region] = p.TotalRate / float64(len(t.Edges))
		}
	}
	for region := range rates {
		if t.Edges[region] == "" {
			return nil, fmt.Errorf("rate %s: no edge in region %q (edges: %s)", region, region, regionList(t.Edges))
		}
	}
	if (p.Mix[KindSigned] > 0 || p.Mix[KindReplay] > 0) && t.KeyID == "" && t.Admin == nil {
		return nil, errors.New("mix: signed and replay requests need an API key (--key-id and --secret) or an admin address (--addr) to create one")
	}
	if p.Mix[KindJWT] > 0 && (t.JWTKey == "" || t.JWTToken == nil) {
		return nil, errors.New("mix: jwt requests need a bearer token (--jwt-token) and the routing key of a cell with JWT auth (--jwt-key); --cluster dev provides both")
	}
	if p.Mix[KindReplay] > 0 && len(t.Edges) < 2 {
		return nil, errors.New("mix: replays go to a different region's edge: give at least two edges")
	}
	r := &runner{opts: opts, target: t, plan: p, edges: map[string]*edge{}, log: opts.Logger}
	if len(t.Watchers) > 0 {
		r.breakers = newBreakerLog(t.Watchers)
	}
	for i, s := range p.Steps {
		f, _ := faultFor(s.Action) // the plan was validated
		if err := f.admit(r); err != nil {
			return nil, fmt.Errorf("steps[%d]: %w", i, err)
		}
		if s.Region != "" && t.Edges[s.Region] == "" {
			return nil, fmt.Errorf("steps[%d].region: unknown region %q (regions: %s)", i, s.Region, regionList(t.Edges))
		}
	}
	r.mix = mixTable(p.Mix)
	order := failoverOrder(t.Edges, t.Latencies)
	for region, url := range t.Edges {
		r.edges[region] = &edge{region: region, url: url}
	}
	for region, rate := range rates {
		rc := &regionClient{region: region, rate: rate, stats: newRegionStats()}
		for _, o := range order[region] {
			rc.order = append(rc.order, r.edges[o])
		}
		r.regions = append(r.regions, rc)
	}
	sort.Slice(r.regions, func(i, j int) bool { return r.regions[i].region < r.regions[j].region })
	r.client = newHTTPClient(opts.RequestTimeout, opts.MaxInFlight*len(r.regions), opts.ConnsPerEdge)
	return r, nil
}

func regionList(edges map[string]string) string {
	var names []string
	for r := range edges {
		names = append(names, r)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

// mixTable spreads the kinds over a cycle by smooth weighted round robin,
// so that a mix of 70/25/5 does not send 70 plain requests in a row.
func mixTable(m Mix) []Kind {
	total := m.total()
	current := map[Kind]int{}
	out := make([]Kind, 0, total)
	for range total {
		var best Kind
		for _, k := range Kinds {
			if m[k] == 0 {
				continue
			}
			current[k] += m[k]
			if best == "" || current[k] > current[best] {
				best = k
			}
		}
		current[best] -= total
		out = append(out, best)
	}
	return out
}

// prepareKey sets the signer: the given key, or one created through the
// admin API and applied by every edge. It returns the id of a created key.
func (r *runner) prepareKey(ctx context.Context) (string, error) {
	if r.plan.Mix[KindSigned] == 0 && r.plan.Mix[KindReplay] == 0 {
		return "", nil
	}
	if r.target.KeyID != "" {
		r.signer = hmacSigner(r.target.KeyID, r.target.Secret)
		return "", nil
	}
	resp, err := r.target.Admin.CreateKey(ctx, &pb.CreateKeyRequest{Name: "edgecell-loadtest"})
	if err != nil {
		return "", fmt.Errorf("create an API key for signed requests: %w", err)
	}
	key := resp.GetKey()
	if len(key.GetSecrets()) == 0 {
		return "", fmt.Errorf("create an API key: key %s came without a secret", key.GetId())
	}
	r.signer = hmacSigner(key.GetId(), key.GetSecrets()[0].GetSecret())
	if err := r.waitEdges(ctx, resp.GetRevision()); err != nil {
		r.revokeKey(key.GetId())
		return "", fmt.Errorf("API key %s did not reach every edge: %w", key.GetId(), err)
	}
	return key.GetId(), nil
}

func (r *runner) revokeKey(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.target.Admin.RevokeKey(ctx, &pb.RevokeKeyRequest{Id: id}); err != nil {
		r.log.Warn("could not revoke the load test's API key", "key", id, "err", err)
	}
}

// waitEdges waits until every edge applied rev: through the Controller, else
// through the admin API's edge list.
func (r *runner) waitEdges(ctx context.Context, rev uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if r.target.Controller != nil {
		return r.target.Controller.WaitEdges(ctx, rev)
	}
	for {
		low, err := r.appliedRevision(ctx)
		if err == nil && low >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return fmt.Errorf("edges at revision %d, want %d: %w", low, rev, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// appliedRevision is the lowest revision the edges applied.
func (r *runner) appliedRevision(ctx context.Context) (uint64, error) {
	if r.target.Controller != nil {
		return r.target.Controller.AppliedRevision(), nil
	}
	resp, err := r.target.Admin.ListEdges(ctx, &pb.ListEdgesRequest{})
	if err != nil {
		return 0, err
	}
	if len(resp.GetEdges()) == 0 {
		return 0, errors.New("no edge is connected")
	}
	low := resp.GetEdges()[0].GetAppliedRevision()
	for _, e := range resp.GetEdges() {
		low = min(low, e.GetAppliedRevision())
	}
	return low, nil
}

// run sends the load and runs the steps, then builds the report.
func (r *runner) run(ctx context.Context) *Report {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.start = time.Now()
	if r.breakers != nil {
		// Until the report is written: it waits for the history to catch up.
		followCtx, stopFollow := context.WithCancel(context.WithoutCancel(ctx))
		defer stopFollow()
		go r.breakers.follow(followCtx)
	}
	var load, aux sync.WaitGroup
	for _, rc := range r.regions {
		load.Go(func() { r.generate(ctx, rc) })
	}
	stepsCtx, stopSteps := context.WithCancel(ctx)
	defer stopSteps()
	if r.churn != nil {
		r.propagation = newPropagation()
		aux.Go(func() { r.propagation.track(stepsCtx, r) })
	}
	for _, s := range r.plan.Steps {
		aux.Go(func() { r.runStep(stepsCtx, s) })
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(stepsCtx)
	}()
	load.Wait()
	stopSteps()
	aux.Wait()
	<-progressDone
	elapsed := r.since()
	if r.churn != nil {
		r.churn.verify(context.WithoutCancel(ctx), r.target.Admin)
	}
	return r.report(elapsed)
}

// prespawnedWorkers is how many workers each region starts with.
const prespawnedWorkers = 128

// job is one scheduled request.
type job struct {
	i     int64
	sched time.Duration
}

// generate sends rc's requests open-loop: request i is due at i/rate from
// the start, whatever became of the earlier ones. A due request goes to an
// idle worker, else to a new one while fewer than MaxInFlight are running,
// else it is not sent (client-saturated). Workers stay for the rest of the
// run, so a steady load reuses goroutines and their connections. generate
// returns once every request sent has an outcome.
func (r *runner) generate(ctx context.Context, rc *regionClient) {
	jobs := make(chan job) // unbuffered: a send succeeds only into an idle worker
	var workers sync.WaitGroup
	defer workers.Wait()
	defer close(jobs)
	worker := func(j job, ok bool) {
		for ; ok; j, ok = <-jobs {
			r.counters.noteInFlight(r.counters.inFlight.Add(1))
			r.do(ctx, rc, j.i, j.sched)
			r.counters.inFlight.Add(-1)
		}
	}
	// Idle workers waiting from the start keep a cold start from spawning
	// a goroutine per request while the first connections are dialled.
	running := min(r.opts.MaxInFlight, prespawnedWorkers)
	for range running {
		workers.Go(func() { j, ok := <-jobs; worker(j, ok) })
	}
	total := int64(r.plan.Duration.Seconds() * rc.rate)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := range total {
		sched := time.Duration(float64(i) * float64(time.Second) / rc.rate)
		if wait := sched - r.since(); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		r.counters.scheduled.Add(1)
		j := job{i: i, sched: sched}
		select {
		case jobs <- j:
			continue
		default:
		}
		if running >= r.opts.MaxInFlight {
			r.record(rc, &outcome{kind: r.mix[i%int64(len(r.mix))], scheduled: sched, done: r.since(), class: ClassSaturated})
			continue
		}
		running++
		workers.Go(func() { worker(j, true) })
	}
}

// event records a scenario event at the current time.
func (r *runner) event(action, detail string, err error) { r.eventAt(r.since(), action, detail, err) }

// eventAt records an event that happened at offset at from the start.
func (r *runner) eventAt(at time.Duration, action, detail string, err error) {
	e := Event{AtS: at.Seconds(), Action: action, Detail: detail}
	if err != nil {
		e.Error = err.Error()
	}
	r.eventsMu.Lock()
	r.events = append(r.events, e)
	r.eventsMu.Unlock()
	r.log.Info("scenario event", "action", action, "detail", detail, "err", err)
}

// progress writes a line every second until ctx ends, and settles the
// timeline of seconds that can no longer change.
func (r *runner) progress(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			if r.opts.Progress != nil && r.opts.ProgressInPlace {
				fmt.Fprintln(r.opts.Progress)
			}
			return
		case <-tick.C:
		}
		done := r.counters.completed.Load()
		settleBefore := int((r.since() - r.opts.RequestTimeout - time.Second) / time.Second)
		for _, rc := range r.regions {
			rc.stats.settle(settleBefore)
		}
		if r.opts.Progress == nil {
			continue
		}
		line := fmt.Sprintf("[%5.1fs/%s] %7d rps  %d requests  %d errors  %d in flight  replays accepted %d",
			r.since().Seconds(), r.plan.Duration, done-last, done, r.counters.errors.Load(),
			r.counters.inFlight.Load(), r.counters.replaysAccepted.Load())
		last = done
		if r.opts.ProgressInPlace {
			fmt.Fprintf(r.opts.Progress, "\r%s\x1b[K", line)
		} else {
			fmt.Fprintln(r.opts.Progress, line)
		}
	}
}
