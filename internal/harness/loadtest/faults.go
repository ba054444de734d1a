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

// runStep waits for s's time and runs it, recording an event.
func (r *runner) runStep(ctx context.Context, s Step) {
	at := s.At.Resolve(r.plan.Duration)
	select {
	case <-time.After(at - r.since()):
	case <-ctx.Done():
		return
	}
	c := r.target.Controller
	// Events are stamped when the action starts: a kill takes effect at
	// once, while stopping the process may take a second longer.
	begin := r.since()
	switch s.Action {
	case ActionKillLeader:
		name, err := c.KillLeader(ctx)
		r.eventAt(begin, string(s.Action), name, err)
	case ActionRestartCoordinators:
		names, err := c.RestartCoordinators(ctx)
		r.eventAt(begin, string(s.Action), strings.Join(names, ","), err)
	case ActionStopBackends:
		r.eventAt(begin, string(s.Action), s.Region, c.StopBackends(s.Region))
	case ActionStartBackends:
		r.eventAt(begin, string(s.Action), s.Region, c.StartBackends(s.Region))
	case ActionKillEdge:
		r.eventAt(begin, string(s.Action), s.Region, c.KillEdge(s.Region))
	case ActionPartitionRegion:
		cut, err := c.(Partitioner).PartitionRegion(s.Region)
		r.eventAt(begin, string(s.Action), fmt.Sprintf("%s (%d connections cut)", s.Region, cut), err)
	case ActionHealPartition:
		r.eventAt(begin, string(s.Action), "", c.(Partitioner).HealPartitions())
	case ActionChurnPlacements:
		r.churnPlacements(ctx, s)
	}
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
