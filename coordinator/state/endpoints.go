package state

import (
	"fmt"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/breaker"
	"github.com/edgecell/edgecell/internal/health"
	"github.com/edgecell/edgecell/internal/policy"
)

// The breaker and health commands. Each checks its whole input before it
// changes anything, then updates the endpoints' states at tx.now (the
// leader's timestamp). A status change (see the package doc) yields an event
// and stamps the status with tx.index; any other change only marks the txn
// dirty.

// endpointOwner returns the cell of a known endpoint, or the refusal naming field.
func (tx *txn) endpointOwner(field, id string) (*pb.Cell, *pb.CommandError) {
	if id == "" {
		return nil, invalid(field, "endpoint id is required")
	}
	owner, ok := tx.t.endpoints.Get(id)
	if !ok {
		return nil, notFound(field, "endpoint %q is not in the routing config", id)
	}
	c, _ := tx.t.cells.Get(owner)
	return c, nil
}

// stateOf returns the endpoint's state, with a breaker and a health state
// created from its cell's policies when missing. The caller stores it back
// with tx.t.epStates.Set only when it changed.
func (tx *txn) stateOf(id string, cell *pb.Cell) endpointState {
	e, _ := tx.t.epStates.Get(id)
	if !e.hasBreaker {
		e.breaker, e.hasBreaker = breaker.New(policy.BreakerOf(cell.GetBreaker())), true
	}
	if !e.hasHealth {
		e.health, e.hasHealth = health.New(policy.HealthOf(cell.GetHealthCheck())), true
	}
	return e
}

// put stores e for id after a change and returns the events of its status
// changes, stamping them with this txn's index.
func (tx *txn) put(id string, e endpointState, breakerBefore breaker.Status, healthChanged bool) []*pb.Event {
	var events []*pb.Event
	if e.breaker.Status() != breakerBefore {
		e.breakerRev = tx.index
		events = append(events, &pb.Event{Kind: &pb.Event_PutBreaker{PutBreaker: breakerStatus(id, e.breaker, tx.index)}})
	}
	if healthChanged {
		e.healthRev = tx.index
		events = append(events, &pb.Event{Kind: &pb.Event_PutHealth{PutHealth: healthStatus(id, e.health, tx.index)}})
	}
	tx.t.epStates.Set(id, e)
	tx.dirty = true
	return events
}

// ownersOf returns the cell of each item's endpoint, or the refusal naming
// the first unknown one ("outcomes[2].endpoint").
func ownersOf[T any](tx *txn, list string, items []T, endpoint func(T) string) ([]*pb.Cell, *pb.CommandError) {
	cells := make([]*pb.Cell, len(items))
	for i, it := range items {
		c, e := tx.endpointOwner(fmt.Sprintf("%s[%d].endpoint", list, i), endpoint(it))
		if e != nil {
			return nil, e
		}
		cells[i] = c
	}
	return cells, nil
}

func requireEdge(edge string) *pb.CommandError {
	if edge == "" {
		return invalid("edge", "the reporting edge's id is required")
	}
	return nil
}

// reportOutcomes counts a batch, unless it is a retry of the edge's last
// counted one (see reports.go): checked before the endpoints, so a retry is
// acknowledged even after the config dropped one of them.
func (tx *txn) reportOutcomes(op *pb.ReportOutcomesOp) ([]*pb.Event, *pb.CommandError) {
	if e := requireEdge(op.GetEdge()); e != nil {
		return nil, e
	}
	if tx.replayed(op.GetEdge(), outcomeReports, op.GetBatchId()) {
		return nil, nil
	}
	cells, e := ownersOf(tx, "outcomes", op.GetOutcomes(), (*pb.EndpointOutcomes).GetEndpoint)
	if e != nil {
		return nil, e
	}
	tx.counted(op.GetEdge(), outcomeReports, op.GetBatchId())
	var events []*pb.Event
	outs := op.GetOutcomes()
	caps := ejectionCaps{tx: tx, out: map[string]int{}}
	for i, o := range outs {
		e := tx.stateOf(o.GetEndpoint(), cells[i])
		before := e.breaker.Status()
		// An edge sends the failures that followed its last success as a
		// second entry for the endpoint (see EndpointOutcomes).
		follow := i+1 < len(outs) && outs[i+1].GetEndpoint() == o.GetEndpoint() && outs[i+1].GetSuccesses() == 0
		tr, changed := e.breaker.ObserveCapped(tx.now, breaker.Outcomes{
			Successes: o.GetSuccesses(), ConnectErrors: o.GetConnectErrors(), Timeouts: o.GetTimeouts(),
			Status5xx: o.GetStatus_5Xx(), Edge: op.GetEdge(), FailuresFollow: follow,
		}, caps.room(cells[i]))
		if changed && tr.To == breaker.Open {
			caps.opened(cells[i])
		}
		events = append(events, tx.put(o.GetEndpoint(), e, before, false)...)
	}
	return events, nil
}

// The ejection cap (a cell's breaker.max_ejection_percent; see the breaker
// package doc): a ReportOutcomes may open an endpoint's breaker only while
// the cell's endpoints out, open or half-open, plus this one are at most
// floor(endpoints × percent / 100). Otherwise the breaker stays closed with
// its counts and records the refusal in its reason (put_breaker, closed,
// with a reason starting "closed: trip refused"), once until it opens or is
// reset, so that a flood of reports moves the revision once per held
// endpoint. Only ReportOutcomes opens a closed breaker; a failed probe
// reopens a half-open one, already out. The cap never closes a breaker: a
// config change that lowers it, or drops endpoints, leaves the open ones
// open. Health verdicts and edges' local trips are not counted or capped.
//
// Endpoint ids are unique across cells, so an endpoint counts in one cell
// only; two ids with the same URL are two endpoints with two breakers.

// ejectionCaps counts, for one command, each cell's endpoints out: on the
// first trip the cell's outcomes would take (O(endpoints of the cell)), then
// by following the trips the command takes, so that a batch naming many
// endpoints of a big cell scans it once.
type ejectionCaps struct {
	tx  *txn
	out map[string]int // cell id -> endpoints out
}

// room is the cap of cell for breaker.ObserveCapped.
func (c *ejectionCaps) room(cell *pb.Cell) breaker.Room {
	return func() (bool, string) {
		id := cell.GetId()
		out, ok := c.out[id]
		if !ok {
			out = c.tx.endpointsOut(cell)
			c.out[id] = out
		}
		p := breaker.New(policy.BreakerOf(cell.GetBreaker())).Policy() // defaults filled in
		n := len(cell.GetEndpoints())
		limit := p.MaxEjected(n)
		if out < limit {
			return true, ""
		}
		return false, fmt.Sprintf("%d of %d endpoints of cell %s are out, and max_ejection_percent %d allows %d",
			out, n, id, p.MaxEjectionPercent, limit)
	}
}

// opened follows a trip of one of cell's breakers.
func (c *ejectionCaps) opened(cell *pb.Cell) {
	if _, ok := c.out[cell.GetId()]; ok {
		c.out[cell.GetId()]++
	}
}

// endpointsOut counts the endpoints of cell whose breaker is open or half-open.
func (tx *txn) endpointsOut(cell *pb.Cell) int {
	n := 0
	for _, ep := range cell.GetEndpoints() {
		if e, ok := tx.t.epStates.Get(ep.GetId()); ok && e.hasBreaker && e.breaker.State() != breaker.Closed {
			n++
		}
	}
	return n
}

// reportBatch applies each report of op as its own op would be applied, in
// order, outcomes first, and answers for each in tx.batchErrs. A refused
// report has changed nothing (reportOutcomes and reportHealth refuse before
// they change anything), so the others go on.
func (tx *txn) reportBatch(op *pb.ReportBatchOp) []*pb.Event {
	var events []*pb.Event
	tx.batchErrs = make([]*pb.CommandError, 0, len(op.GetOutcomes())+len(op.GetHealth()))
	note := func(evs []*pb.Event, e *pb.CommandError) {
		if e == nil {
			e = &pb.CommandError{}
		}
		tx.batchErrs = append(tx.batchErrs, e)
		events = append(events, evs...)
	}
	for _, r := range op.GetOutcomes() {
		note(tx.reportOutcomes(r))
	}
	for _, r := range op.GetHealth() {
		note(tx.reportHealth(r))
	}
	return events
}

// reportHealth is reportOutcomes for health check results.
func (tx *txn) reportHealth(op *pb.ReportHealthOp) ([]*pb.Event, *pb.CommandError) {
	if e := requireEdge(op.GetEdge()); e != nil {
		return nil, e
	}
	if tx.replayed(op.GetEdge(), healthReports, op.GetBatchId()) {
		return nil, nil
	}
	cells, e := ownersOf(tx, "checks", op.GetChecks(), (*pb.EndpointChecks).GetEndpoint)
	if e != nil {
		return nil, e
	}
	tx.counted(op.GetEdge(), healthReports, op.GetBatchId())
	var events []*pb.Event
	for i, c := range op.GetChecks() {
		if len(c.GetResults()) == 0 {
			continue
		}
		checks := make([]health.Check, len(c.GetResults()))
		for j, r := range c.GetResults() {
			checks[j] = health.Check{OK: r.GetOk(), Detail: r.GetDetail()}
		}
		e := tx.stateOf(c.GetEndpoint(), cells[i])
		changed := e.health.Report(tx.now, health.Report{Edge: op.GetEdge(), Region: op.GetRegion(), Checks: checks})
		events = append(events, tx.put(c.GetEndpoint(), e, e.breaker.Status(), changed)...)
	}
	return events, nil
}

// tick lets time act on every state whose deadline has passed, by endpoint id.
func (tx *txn) tick() []*pb.Event {
	var due []string
	tx.t.epStates.Scan(func(id string, e endpointState) bool {
		if d, ok := e.deadline(); ok && !d.After(tx.now) {
			due = append(due, id)
		}
		return true
	})
	var events []*pb.Event
	for _, id := range due {
		e, _ := tx.t.epStates.Get(id)
		before := e.breaker.Status()
		if e.hasBreaker {
			e.breaker.Tick(tx.now)
		}
		changed := e.hasHealth && e.health.Tick(tx.now)
		events = append(events, tx.put(id, e, before, changed)...)
	}
	return events
}

func (tx *txn) grantProbe(op *pb.GrantProbeOp) ([]*pb.Event, *pb.CommandError) {
	cell, e := tx.endpointOwner("endpoint", op.GetEndpoint())
	if e != nil {
		return nil, e
	}
	if e := requireEdge(op.GetEdge()); e != nil {
		return nil, e
	}
	st := tx.stateOf(op.GetEndpoint(), cell)
	before := st.breaker.Status()
	tx.granted = st.breaker.GrantProbe(tx.now, op.GetEdge())
	return tx.put(op.GetEndpoint(), st, before, false), nil
}

func (tx *txn) probeResult(op *pb.ProbeResultOp) ([]*pb.Event, *pb.CommandError) {
	cell, e := tx.endpointOwner("endpoint", op.GetEndpoint())
	if e != nil {
		return nil, e
	}
	if e := requireEdge(op.GetEdge()); e != nil {
		return nil, e
	}
	st := tx.stateOf(op.GetEndpoint(), cell)
	before := st.breaker.Status()
	st.breaker.ProbeResult(tx.now, op.GetEdge(), op.GetOk())
	return tx.put(op.GetEndpoint(), st, before, false), nil
}

// resetBreaker closes the breaker. An endpoint whose breaker never existed
// is already closed with nothing to forget: nothing changes.
func (tx *txn) resetBreaker(op *pb.ResetBreakerOp) ([]*pb.Event, *pb.CommandError) {
	if _, e := tx.endpointOwner("endpoint", op.GetEndpoint()); e != nil {
		return nil, e
	}
	st, _ := tx.t.epStates.Get(op.GetEndpoint())
	if !st.hasBreaker {
		return nil, nil
	}
	before := st.breaker.Status()
	st.breaker.Reset(tx.now)
	return tx.put(op.GetEndpoint(), st, before, false), nil
}

// reconcileEndpointStates follows a config change: states of endpoints that
// left the config are dropped (without an event: the cell's own event tells
// edges the endpoint is gone), and the others take their cell's policies.
// Untouched states are not rewritten, so a config change that keeps the
// policies copies no node of the tree.
func (tx *txn) reconcileEndpointStates() {
	var gone []string
	type update struct {
		id string
		e  endpointState
	}
	var updates []update
	tx.t.epStates.Scan(func(id string, e endpointState) bool {
		owner, ok := tx.t.endpoints.Get(id)
		if !ok {
			gone = append(gone, id)
			return true
		}
		cell, _ := tx.t.cells.Get(owner)
		next := e
		if e.hasBreaker {
			next.breaker.SetPolicy(policy.BreakerOf(cell.GetBreaker()))
		}
		if e.hasHealth {
			next.health.SetPolicy(policy.HealthOf(cell.GetHealthCheck()))
		}
		if next.breaker != e.breaker || next.health.Policy() != e.health.Policy() {
			updates = append(updates, update{id, next})
		}
		return true
	})
	for _, id := range gone {
		tx.t.epStates.Delete(id)
	}
	for _, u := range updates {
		tx.t.epStates.Set(u.id, u.e)
	}
}

// nowOf is the leader's timestamp a command carries.
func nowOf(cmd *pb.Command) time.Time { return time.Unix(0, cmd.GetNowUnixNano()).UTC() }
