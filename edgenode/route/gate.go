package route

import (
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/breaker"
	"github.com/edgecell/edgecell/internal/policy"
)

// Reason says why an endpoint may or may not take a new request.
type Reason uint8

const (
	// Allowed: send.
	Allowed Reason = iota
	// BreakerOpen: the global breaker is open.
	BreakerOpen
	// BreakerHalfOpen: the global breaker is half-open; only the probing edge
	// sends it anything, outside the request path.
	BreakerHalfOpen
	// LocalTrip: this edge saw consecutive connection failures.
	LocalTrip
	// Unhealthy: the replicated health verdict is UNHEALTHY.
	Unhealthy
	// NumReasons bounds the values, so callers can count skips in an array.
	NumReasons = 5
)

// String returns the word X-Edge-Route and 502 bodies use: "allowed",
// "breaker-open", "breaker-half-open", "local-trip" or "unhealthy".
func (r Reason) String() string {
	switch r {
	case Allowed:
		return "allowed"
	case BreakerOpen:
		return "breaker-open"
	case BreakerHalfOpen:
		return "breaker-half-open"
	case LocalTrip:
		return "local-trip"
	case Unhealthy:
		return "unhealthy"
	}
	return "invalid"
}

// Outcome is one proxied request's result as the coordinators' breakers
// count it.
type Outcome uint8

const (
	// Success: the upstream answered with a status below 500.
	Success Outcome = iota
	// ConnectError: no connection could be made, or it failed before the
	// upstream answered.
	ConnectError
	// Timeout: the upstream did not start its response in time (504).
	Timeout
	// Status5xx: the upstream answered 5xx.
	Status5xx
)

// maxPending caps each outcome counter kept across failed reports, so an
// edge cut off from the coordinators for hours does not overflow them.
const maxPending = 1 << 24

// Gate is the per-endpoint state that outlives routing tables: the breaker
// gate (global state plus local trip), the replicated health verdict and the
// outcome counters not yet reported. Every table of one lineage (built from
// another by Apply, Replace or WithRevision) hands out the same *Gate for an
// endpoint id while that id stays in the config. All methods are safe for
// concurrent use; Check, Record and the Connect methods are lock-free and do
// not allocate (except a local trip, once).
type Gate struct {
	id     string
	policy policy.Breaker
	// health is revision<<1 | unhealthy, so both change in one store.
	health atomic.Uint64
	// path is the breaker gate: global state and local trip.
	path requestPath
	// The counters are written by every request: on a cache line of their
	// own, they do not slow the reads of Check on other cores.
	_      [64]byte
	counts [4]atomic.Uint32 // by Outcome
	// trail counts, by failure Outcome, the failures since this edge's
	// last success, so a report can say which failures of its batch came
	// after the batch's successes (see TakeOutcomes).
	trail [4]atomic.Uint32
	_     [64]byte
	// wake is the lineage's urgent-report signal (Table.Wake).
	wake chan struct{}
	// probeAt is when the prober last asked for this endpoint's lease (unix ns).
	probeAt atomic.Int64
}

func newGate(id string, p policy.Breaker, wake chan struct{}) *Gate {
	g := &Gate{id: id, policy: p, wake: wake}
	g.path.init(p)
	return g
}

// urgent asks the reporter to send outcomes now rather than at its next
// tick; it never blocks.
func (g *Gate) urgent() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// ID is the endpoint id.
func (g *Gate) ID() string { return g.id }

// Check says whether a new request may go to the endpoint at nowUnixNano.
// Hot path: a few atomic loads, no lock, no allocation.
func (g *Gate) Check(nowUnixNano int64) Reason {
	if g.health.Load()&1 != 0 {
		return Unhealthy
	}
	return g.path.check(nowUnixNano)
}

// ConnectFailed records a failed connection attempt; enough of them in a row
// trip the endpoint on this edge at once (see requestPath).
// A trip also asks for an urgent report, so the other edges learn of the
// failures without waiting for the next report tick.
func (g *Gate) ConnectFailed(nowUnixNano int64) (tripped bool) {
	tripped = g.path.connectFailed(nowUnixNano)
	if tripped {
		g.urgent()
	}
	return tripped
}

// ConnectSucceeded ends a run of connection failures.
func (g *Gate) ConnectSucceeded() { g.path.connectSucceeded() }

// Global is the global breaker state held and the revision that set it.
func (g *Gate) Global() (breaker.State, uint64) { return g.path.state() }

// Healthy reports whether the replicated verdict is anything but UNHEALTHY.
func (g *Gate) Healthy() bool { return g.health.Load()&1 == 0 }

// Record counts one outcome for the next report: one atomic add, plus a
// load on success and an add on failure to keep the run of failures. The
// failure that makes this edge's own run reach the breaker's
// consecutive-failure threshold asks for an urgent report: the replicated
// breaker can open at once instead of at the next report tick.
func (g *Gate) Record(o Outcome) {
	g.counts[o].Add(1)
	if o == Success {
		for i := ConnectError; i <= Status5xx; i++ {
			if g.trail[i].Load() != 0 {
				g.trail[i].Store(0)
			}
		}
		return
	}
	g.trail[o].Add(1)
	if g.trail[ConnectError].Load()+g.trail[Timeout].Load()+g.trail[Status5xx].Load() == g.policy.ConsecutiveFailures {
		g.urgent()
	}
}

// TakeOutcomes returns the counts recorded since the last call and zeroes
// them; nil when there are none. When failures followed the batch's last
// success, they come as a second entry for the same endpoint, after the
// first: the coordinators apply entries in order, so the breaker counts them
// as the start of a run of consecutive failures instead of letting the
// batch's successes hide them. Give the entries back with ReturnOutcomes
// when they could not be reported.
func (g *Gate) TakeOutcomes() []*pb.EndpointOutcomes {
	var c [4]uint32
	any := false
	for i := range g.counts {
		if g.counts[i].Load() != 0 {
			c[i] = g.counts[i].Swap(0)
			any = any || c[i] != 0
		}
	}
	if !any {
		return nil
	}
	head := &pb.EndpointOutcomes{Endpoint: g.id, Successes: c[Success], ConnectErrors: c[ConnectError], Timeouts: c[Timeout], Status_5Xx: c[Status5xx]}
	if c[Success] == 0 {
		return []*pb.EndpointOutcomes{head}
	}
	var t [4]uint32
	for i := ConnectError; i <= Status5xx; i++ {
		t[i] = min(g.trail[i].Load(), c[i])
	}
	if t == [4]uint32{} {
		return []*pb.EndpointOutcomes{head}
	}
	head.ConnectErrors -= t[ConnectError]
	head.Timeouts -= t[Timeout]
	head.Status_5Xx -= t[Status5xx]
	return []*pb.EndpointOutcomes{head, {Endpoint: g.id, ConnectErrors: t[ConnectError], Timeouts: t[Timeout], Status_5Xx: t[Status5xx]}}
}

// ReturnOutcomes adds back counts TakeOutcomes handed out and that could not
// be reported. Each counter stops growing at 2^24, so an edge cut off from
// the coordinators for hours keeps bounded, still meaningful counts.
func (g *Gate) ReturnOutcomes(o *pb.EndpointOutcomes) {
	for i, v := range [4]uint32{o.GetSuccesses(), o.GetConnectErrors(), o.GetTimeouts(), o.GetStatus_5Xx()} {
		for v != 0 {
			cur := g.counts[i].Load()
			if g.counts[i].CompareAndSwap(cur, uint32(min(uint64(cur)+uint64(v), maxPending))) {
				break
			}
		}
	}
}

// ClaimProbe reports whether the prober may ask for this endpoint's probe
// lease at now: at most once per every interval, whichever caller wins.
func (g *Gate) ClaimProbe(now time.Time, every time.Duration) bool {
	last := g.probeAt.Load()
	n := now.UnixNano()
	if last != 0 && n-last < int64(every) {
		return false
	}
	return g.probeAt.CompareAndSwap(last, n)
}

// ProbeLease is the cell's probe lease (its default filled in).
func (g *Gate) ProbeLease() time.Duration { return g.policy.ProbeLease }

// setBreaker follows a replicated status. A missing status means closed:
// revision 0 never overrides anything, but a reset (atRevision > 0) closes
// a gate still holding another state, because the coordinators dropped it.
func (g *Gate) setBreaker(st *pb.BreakerStatus, atRevision uint64) {
	if st != nil {
		g.path.setGlobal(breakerState(st.GetState()), st.GetModRevision())
		return
	}
	if s, _ := g.path.state(); s != breaker.Closed && atRevision > 0 {
		g.path.setGlobal(breaker.Closed, atRevision)
	}
}

// setHealth follows a replicated verdict; same rules as setBreaker.
func (g *Gate) setHealth(st *pb.HealthStatus, atRevision uint64) {
	var want uint64
	switch {
	case st != nil:
		want = st.GetModRevision() << 1
		if st.GetVerdict() == pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY {
			want |= 1
		}
	case atRevision > 0 && !g.Healthy():
		want = atRevision << 1
	default:
		return
	}
	for {
		cur := g.health.Load()
		if want>>1 < cur>>1 || g.health.CompareAndSwap(cur, want) {
			return
		}
	}
}

func breakerState(s pb.BreakerState) breaker.State {
	switch s {
	case pb.BreakerState_BREAKER_STATE_OPEN:
		return breaker.Open
	case pb.BreakerState_BREAKER_STATE_HALF_OPEN:
		return breaker.HalfOpen
	}
	return breaker.Closed
}

// gates is the registry of one table lineage: endpoint id -> Gate. Only the
// builder that finishes a table writes it (the watch goroutine); readers
// (reporter, prober) take the lock briefly.
type gates struct {
	mu sync.Mutex
	m  map[string]*Gate
	// wake carries urgent-report requests from every gate (capacity 1).
	wake chan struct{}
}

func newGates() *gates { return &gates{m: map[string]*Gate{}, wake: make(chan struct{}, 1)} }

// get returns id's gate, creating it (or replacing it when the cell's local
// trip policy changed) as needed. created reports a new gate, which must be
// told the global state.
func (gs *gates) get(id string, p policy.Breaker) (g *Gate, created bool) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g = gs.m[id]; g != nil && g.policy == p {
		return g, false
	}
	g = newGate(id, p, gs.wake)
	gs.m[id] = g
	return g, true
}

// lookup returns id's gate or nil.
func (gs *gates) lookup(id string) *Gate {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return gs.m[id]
}

// retain drops every gate whose id is not live.
func (gs *gates) retain(live map[string]struct{}) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	for id := range gs.m {
		if _, ok := live[id]; !ok {
			delete(gs.m, id)
		}
	}
}
