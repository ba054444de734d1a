package loadtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// fault is one action a scenario step can name: a failpoint, in the words
// of etcd's robustness suite. Each is a stateless value in faults(); what a
// step changes lives in the target and in the runner.
type fault interface {
	// action is the name a scenario gives the step.
	action() Action
	// validate checks a step of this action before any target is known. Its
	// error begins with the offending field ("region: ...").
	validate(s Step) error
	// admit checks that the run's target can run the step and sets up in r
	// what the step needs from the whole run. Its error names the action
	// and says what to give instead.
	admit(r *runner) error
	// inject performs the step against the target and records its events;
	// begin is the offset the step started at.
	inject(ctx context.Context, r *runner, s Step, begin time.Duration)
}

// faults is every fault step action, in the order errors list them.
func faults() []fault {
	return []fault{
		processFault{name: ActionKillLeader, do: func(ctx context.Context, c Controller, _ Step) (string, error) {
			return c.KillLeader(ctx)
		}},
		processFault{name: ActionRestartCoordinators, do: func(ctx context.Context, c Controller, _ Step) (string, error) {
			names, err := c.RestartCoordinators(ctx)
			return strings.Join(names, ","), err
		}},
		processFault{name: ActionStopBackends, needsRegion: true, do: func(_ context.Context, c Controller, s Step) (string, error) {
			return s.Region, c.StopBackends(s.Region)
		}},
		processFault{name: ActionStartBackends, needsRegion: true, do: func(_ context.Context, c Controller, s Step) (string, error) {
			return s.Region, c.StartBackends(s.Region)
		}},
		processFault{name: ActionKillEdge, needsRegion: true, do: func(_ context.Context, c Controller, s Step) (string, error) {
			return s.Region, c.KillEdge(s.Region)
		}},
		partitionFault{name: ActionPartitionRegion, needsRegion: true, do: func(p Partitioner, s Step) (string, error) {
			cut, err := p.PartitionRegion(s.Region)
			return fmt.Sprintf("%s (%d connections cut)", s.Region, cut), err
		}},
		partitionFault{name: ActionHealPartition, do: func(p Partitioner, _ Step) (string, error) {
			return "", p.HealPartitions()
		}},
		churnFault{},
	}
}

// faultFor is the fault of action a; false when no fault has that name.
func faultFor(a Action) (fault, bool) {
	for _, f := range faults() {
		if f.action() == a {
			return f, true
		}
	}
	return nil, false
}

// actionList names every action for an error: "a, b or c".
func actionList() string {
	var names []string
	for _, f := range faults() {
		names = append(names, string(f.action()))
	}
	last := len(names) - 1
	return strings.Join(names[:last], ", ") + " or " + names[last]
}

// processFault acts on the cluster's processes through the target's
// Controller, which only an in-process dev cluster gives.
type processFault struct {
	name        Action
	needsRegion bool
	// do performs the step and returns its event's detail.
	do func(ctx context.Context, c Controller, s Step) (detail string, err error)
}

func (f processFault) action() Action { return f.name }

func (f processFault) validate(s Step) error { return needRegion(f.name, f.needsRegion, s) }

func (f processFault) admit(r *runner) error { return needController(f.name, r.target) }

func (f processFault) inject(ctx context.Context, r *runner, s Step, begin time.Duration) {
	detail, err := f.do(ctx, r.target.Controller, s)
	r.eventAt(begin, string(f.name), detail, err)
}

// partitionFault cuts or heals links between regions in the dev cluster's
// simulated network: its Controller must be a Partitioner.
type partitionFault struct {
	name        Action
	needsRegion bool
	// do performs the step and returns its event's detail.
	do func(p Partitioner, s Step) (detail string, err error)
}

func (f partitionFault) action() Action { return f.name }

func (f partitionFault) validate(s Step) error { return needRegion(f.name, f.needsRegion, s) }

func (f partitionFault) admit(r *runner) error {
	if err := needController(f.name, r.target); err != nil {
		return err
	}
	if _, ok := r.target.Controller.(Partitioner); !ok {
		return fmt.Errorf("%s needs the dev cluster's simulated network: run with --cluster dev --simulate-latency", f.name)
	}
	return nil
}

func (f partitionFault) inject(_ context.Context, r *runner, s Step, begin time.Duration) {
	detail, err := f.do(r.target.Controller.(Partitioner), s)
	r.eventAt(begin, string(f.name), detail, err)
}

// needRegion refuses a step of action a without a region when it needs one.
func needRegion(a Action, needs bool, s Step) error {
	if needs && s.Region == "" {
		return fmt.Errorf("region: %s needs a region", a)
	}
	return nil
}

// needController refuses action a against a target without a Controller.
func needController(a Action, t Target) error {
	if t.Controller == nil {
		return fmt.Errorf("%s needs control of the cluster's processes: run with --cluster dev", a)
	}
	return nil
}

// churnFault is churn-placements: placement writes through the admin API,
// checked at the end for lost acknowledged writes (churnCheck).
type churnFault struct{}

func (churnFault) action() Action { return ActionChurnPlacements }

func (churnFault) validate(Step) error { return nil }

func (f churnFault) admit(r *runner) error {
	if r.target.Admin == nil {
		return fmt.Errorf("%s needs the admin API: give --addr", f.action())
	}
	r.churn = &churnCheck{}
	return nil
}

func (churnFault) inject(ctx context.Context, r *runner, s Step, _ time.Duration) {
	r.churnPlacements(ctx, s)
}

// runStep waits for s's time and runs it, recording its events.
func (r *runner) runStep(ctx context.Context, s Step) {
	at := s.At.Resolve(r.plan.Duration)
	select {
	case <-time.After(at - r.since()):
	case <-ctx.Done():
		return
	}
	f, _ := faultFor(s.Action) // the plan was validated
	// Events are stamped when the action starts: a kill takes effect at
	// once, while stopping the process may take a second longer.
	f.inject(ctx, r, s, r.since())
}

// churnPrefix starts the keys churn-placements writes.
const churnPrefix = "loadtest-churn-"

// churnKeys is how many keys churn-placements cycles through.
const churnKeys = 8

// churnPlacements writes placements s.PerSecond times a second until
// s.Until, each to another cell, one write at a time.
func (r *runner) churnPlacements(ctx context.Context, s Step) {
	perSecond := s.PerSecond
	if perSecond == 0 {
		perSecond = 20
	}
	end := r.plan.Duration
	if s.Until != nil {
		end = s.Until.Resolve(r.plan.Duration)
	}
	r.event(string(s.Action), fmt.Sprintf("start: %d writes/s over %d keys", perSecond, churnKeys), nil)
	interval := time.Second / time.Duration(perSecond)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var n int
	for r.since() < end {
		key := fmt.Sprintf("%s%d", churnPrefix, n%churnKeys)
		cell := r.churn.cells[(n/churnKeys)%len(r.churn.cells)]
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := r.target.Admin.PutPlacement(wctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: key, Cell: cell}})
		cancel()
		r.churn.note(key, cell, err == nil)
		if err == nil {
			r.propagation.committed(resp.GetRevision(), r.since())
		}
		n++
		select {
		case <-tick.C:
		case <-ctx.Done():
			r.event(string(s.Action), fmt.Sprintf("stop: %d writes", n), nil)
			return
		}
	}
	r.event(string(s.Action), fmt.Sprintf("stop: %d writes", n), nil)
}

// churnCheck is the "no lost acknowledged write" invariant of placement
// churn: once the run is over, each churned key must hold the cell of its
// last acknowledged write, or of a later write whose outcome is unknown
// (it failed, so it may or may not have committed).
type churnCheck struct {
	cells []string

	mu      sync.Mutex
	acked   map[string]string          // key -> cell of the last acknowledged write
	unknown map[string]map[string]bool // key -> cells of failed writes since then
	writes  int

	checked    bool
	violations int
	detail     string
}

func (c *churnCheck) prepare(ctx context.Context, admin pb.AdminServiceClient) error {
	resp, err := admin.ListCells(ctx, &pb.ListCellsRequest{})
	if err != nil {
		return fmt.Errorf("churn-placements: list cells: %w", err)
	}
	for _, cell := range resp.GetCells() {
		c.cells = append(c.cells, cell.GetId())
	}
	if len(c.cells) == 0 {
		return fmt.Errorf("churn-placements: the cluster has no cell to place keys on")
	}
	c.acked, c.unknown = map[string]string{}, map[string]map[string]bool{}
	return nil
}

func (c *churnCheck) note(key, cell string, acked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if acked {
		c.acked[key] = cell
		delete(c.unknown, key)
		return
	}
	if c.unknown[key] == nil {
		c.unknown[key] = map[string]bool{}
	}
	c.unknown[key][cell] = true
}

// verify reads the churned placements linearizably and compares.
func (c *churnCheck) verify(ctx context.Context, admin pb.AdminServiceClient) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var resp *pb.ListPlacementsResponse
	var err error
	for {
		resp, err = admin.ListPlacements(ctx, &pb.ListPlacementsRequest{Prefix: churnPrefix, Consistency: pb.Consistency_CONSISTENCY_LINEARIZABLE})
		if err == nil || ctx.Err() != nil {
			break
		}
		select { // a leader election after a restart
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.detail = "could not read the placements back: " + err.Error()
		return
	}
	got := map[string]string{}
	for _, p := range resp.GetPlacements() {
		got[p.GetKey()] = p.GetCell()
	}
	c.checked = true
	var bad []string
	for key, cell := range c.acked {
		if got[key] != cell && !c.unknown[key][got[key]] {
			c.violations++
			bad = append(bad, fmt.Sprintf("%s: acknowledged %s, read %q", key, cell, got[key]))
		}
	}
	c.detail = fmt.Sprintf("%d placement writes, %d keys read back", c.writes, len(got))
	if len(bad) > 0 {
		c.detail += "; lost: " + strings.Join(bad, "; ")
	}
}

// propagation measures config propagation lag: from a write's
// acknowledgement to every running edge having applied its revision.
type propagation struct {
	mu      sync.Mutex
	pending []pendingRevision
	hist    *hdrhistogram.Histogram
	maxLag  time.Duration
}

type pendingRevision struct {
	rev uint64
	at  time.Duration
}

func newPropagation() *propagation { return &propagation{hist: newHist()} }

func (p *propagation) committed(rev uint64, at time.Duration) {
	p.mu.Lock()
	p.pending = append(p.pending, pendingRevision{rev, at})
	p.mu.Unlock()
}

// track polls the edges' applied revision while writes are pending.
func (p *propagation) track(ctx context.Context, r *runner) {
	interval := time.Millisecond
	if r.target.Controller == nil {
		interval = 20 * time.Millisecond // through the admin API
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.mu.Lock()
		idle := len(p.pending) == 0
		p.mu.Unlock()
		if idle {
			continue
		}
		applied, err := r.appliedRevision(ctx)
		if err != nil {
			continue
		}
		now := r.since()
		p.mu.Lock()
		i := 0
		for ; i < len(p.pending) && p.pending[i].rev <= applied; i++ {
			lag := now - p.pending[i].at
			recordMicros(p.hist, lag)
			p.maxLag = max(p.maxLag, lag)
		}
		p.pending = p.pending[i:]
		p.mu.Unlock()
	}
}
