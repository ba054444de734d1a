package breaker

import (
	"fmt"
	"strings"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

// Breaker is one endpoint's replicated circuit breaker. It is a plain value:
// copies are independent, == compares two breakers completely, and every
// method is deterministic in its arguments (see the package doc). Create one
// with New; the zero Breaker has no policy. Methods are not safe for
// concurrent use; the raft apply goroutine owns the copy it modifies.
type Breaker struct {
	s fields
}

// fields is the whole state. Its fields are exported only so that
// MarshalBinary can encode them.
type fields struct {
	Policy policy.Breaker
	State  State
	Trips  uint32
	// Now is the latest time seen, in Unix nanoseconds.
	Now          int64
	OpenedAt     int64
	EjectedUntil int64
	Ejection     time.Duration
	// DecayFrom is when the next TripDecay period began counting.
	DecayFrom   int64
	Run         run
	RunEdge     string
	Window      window
	ProbeHolder string
	ProbeUntil  int64
	// TripRefused: the ejection cap refused a trip since the breaker last
	// opened or was reset (see ObserveCapped).
	TripRefused bool
	Reason      string
	Since       int64
}

// run counts the current run of consecutive failures, by kind.
type run struct{ Connect, Timeout, Status5xx uint64 }

// New returns a closed breaker. Zero or invalid policy fields take their
// defaults (the coordinators refuse them earlier: policy.ValidateCell).
func New(p policy.Breaker) Breaker { return Breaker{s: fields{Policy: p.WithDefaults()}} }

// SetPolicy replaces the policy, as when an operator changes the config. The
// state and trips are kept; a new Window restarts the failure-rate window.
func (b *Breaker) SetPolicy(p policy.Breaker) {
	p = p.WithDefaults()
	if p.Window != b.s.Policy.Window {
		b.s.Window = window{}
	}
	b.s.Policy = p
}

// Policy returns the policy in force, defaults filled in.
func (b Breaker) Policy() policy.Breaker { return b.s.Policy }

// State returns the current state.
func (b Breaker) State() State { return b.s.State }

// Status returns what operators and edges see.
func (b Breaker) Status() Status {
	return Status{
		State: b.s.State, Trips: b.s.Trips,
		OpenedAt: unix(b.s.OpenedAt), EjectedUntil: unix(b.s.EjectedUntil), Ejection: b.s.Ejection,
		ProbeHolder: b.s.ProbeHolder, ProbeUntil: unix(b.s.ProbeUntil),
		TripRefused: b.s.TripRefused, Reason: b.s.Reason, Since: unix(b.s.Since),
	}
}

// Deadline returns the earliest time at which Tick would change the breaker:
// the end of the ejection when open, the next trip to forget when closed.
// The leader's ticker proposes a Tick command once it has passed; ok is
// false when only new inputs can change the breaker.
func (b Breaker) Deadline() (t time.Time, ok bool) {
	switch {
	case b.s.State == Open:
		return unix(b.s.EjectedUntil), true
	case b.s.State == Closed && b.s.Trips > 0:
		return unix(b.s.DecayFrom + int64(b.s.Policy.TripDecay)), true
	}
	return time.Time{}, false
}

// Observe counts an edge's batch of outcomes and opens the breaker when they
// complete a run of consecutive failures or push the failure rate over the
// threshold. It reports the transition, if any. Outcomes are ignored unless
// the breaker is closed. It is ObserveCapped with no cap.
func (b *Breaker) Observe(now time.Time, o Outcomes) (Transition, bool) {
	return b.ObserveCapped(now, o, nil)
}

// Room reports whether the breaker's cell has room for one more ejection
// under its ejection cap (policy.Breaker.MaxEjectionPercent) and, when it
// has not, why, for the reason: "2 of 4 endpoints of cell c1 are out ...".
// It must be deterministic, like every input of a Breaker.
type Room func() (ok bool, why string)

// ObserveCapped is Observe under the cell's ejection cap: when the outcomes
// would open the breaker, it asks room (only then; nil means there is always
// room). Without room the trip is refused: the breaker stays closed and
// keeps its counts, so that once the cell has room the next outcomes that
// still meet a threshold open it. The first refusal since the breaker last
// opened or was reset sets Status.TripRefused and records its reason
// ("closed: trip refused (5 consecutive connect errors, last from edge-a):
// ..."), returned as a Transition from Closed to Closed with false. Later
// refusals change nothing, so a flood of reports against a held endpoint
// changes its status once.
func (b *Breaker) ObserveCapped(now time.Time, o Outcomes, room Room) (Transition, bool) {
	t := b.advance(now)
	failures := o.failures()
	if b.s.State != Closed || uint64(o.Successes)+failures == 0 {
		return Transition{}, false
	}
	b.decay(t)
	p := &b.s.Policy
	switch {
	case o.Successes > 0 && o.FailuresFollow:
		// Neither ends nor extends the run: see Outcomes.FailuresFollow.
	case o.Successes > 0:
		b.s.Run = run{}
	default:
		b.s.Run.Connect += uint64(o.ConnectErrors)
		b.s.Run.Timeout += uint64(o.Timeouts)
		b.s.Run.Status5xx += uint64(o.Status5xx)
		b.s.RunEdge = o.Edge
	}
	key := t / int64(p.Window/policy.WindowBuckets)
	b.s.Window.add(key, uint64(o.Successes)+failures, failures)
	if b.s.Run.total() >= uint64(p.ConsecutiveFailures) {
		return b.tripWithin(t, fmt.Sprintf("%s, last from %s", b.s.Run, b.s.RunEdge), room)
	}
	// One product compared with an integer: exact IEEE arithmetic, so every
	// replica decides alike.
	if req, fail := b.s.Window.sum(key); req >= uint64(p.MinRequests) && float64(fail) >= p.FailureRateThreshold*float64(req) {
		return b.tripWithin(t, fmt.Sprintf("error rate %d%% over %s (%d/%d)", fail*100/req, p.Window, fail, req), room)
	}
	return Transition{}, false
}

// tripWithin trips a closed breaker if room allows, else records the refusal
// (see ObserveCapped).
func (b *Breaker) tripWithin(t int64, why string, room Room) (Transition, bool) {
	ok, full := true, ""
	if room != nil {
		ok, full = room()
	}
	if ok {
		return b.trip(t, why)
	}
	if b.s.TripRefused {
		return Transition{}, false
	}
	b.s.TripRefused = true
	reason := fmt.Sprintf("closed: trip refused (%s): %s", why, full)
	b.s.Reason, b.s.Since = reason, t
	return Transition{From: Closed, To: Closed, At: unix(t), Reason: reason}, false
}

// Tick lets time act: an open breaker whose ejection has ended becomes
// half-open, and a closed one forgets trips per TripDecay.
func (b *Breaker) Tick(now time.Time) (Transition, bool) {
	t := b.advance(now)
	switch b.s.State {
	case Open:
		if t >= b.s.EjectedUntil {
			b.s.ProbeHolder, b.s.ProbeUntil = "", 0
			return b.transition(t, HalfOpen, fmt.Sprintf("half-open: ejection of %s ended", b.s.Ejection))
		}
	case Closed:
		b.decay(t)
	}
	return Transition{}, false
}

// GrantProbe asks for the probe lease of a half-open breaker on behalf of
// edge. It is granted when no other edge holds a valid lease; the holder
// asking again gets true without extending its lease. A closed or open
// breaker, or an empty edge id, is never granted.
func (b *Breaker) GrantProbe(now time.Time, edge string) bool {
	t := b.advance(now)
	if b.s.State != HalfOpen || edge == "" {
		return false
	}
	if b.s.ProbeHolder != "" && t < b.s.ProbeUntil {
		return b.s.ProbeHolder == edge
	}
	b.s.ProbeHolder, b.s.ProbeUntil = edge, t+int64(b.s.Policy.ProbeLease)
	return true
}

// ProbeResult applies the outcome of edge's probe: success closes the
// breaker, failure reopens it with a longer ejection. Results from an edge
// that is not the current lease holder change nothing.
func (b *Breaker) ProbeResult(now time.Time, edge string, ok bool) (Transition, bool) {
	t := b.advance(now)
	if b.s.State != HalfOpen || edge == "" || edge != b.s.ProbeHolder {
		return Transition{}, false
	}
	if !ok {
		return b.trip(t, fmt.Sprintf("probe by %s failed", edge))
	}
	b.clear()
	b.s.DecayFrom = t
	return b.transition(t, Closed, fmt.Sprintf("closed: probe by %s succeeded", edge))
}

// Reset is an operator's reset: the breaker closes and forgets every trip
// and count. The reason is recorded even when it was already closed; ok
// reports whether the state changed.
func (b *Breaker) Reset(now time.Time) (Transition, bool) {
	t := b.advance(now)
	b.clear()
	b.s.Trips = 0
	tr, _ := b.transition(t, Closed, "closed: reset by operator")
	return tr, tr.From != tr.To
}

// advance returns now in Unix nanoseconds, never earlier than a time already seen.
func (b *Breaker) advance(now time.Time) int64 {
	b.s.Now = max(b.s.Now, now.UnixNano())
	return b.s.Now
}

// decay forgets one trip per full TripDecay spent closed.
func (b *Breaker) decay(t int64) {
	if b.s.Trips == 0 {
		return
	}
	d := int64(b.s.Policy.TripDecay)
	n := (t - b.s.DecayFrom) / d
	if n <= 0 {
		return
	}
	b.s.Trips -= uint32(min(n, int64(b.s.Trips)))
	b.s.DecayFrom += n * d
}

// trip opens the breaker for the next, longer ejection.
func (b *Breaker) trip(t int64, why string) (Transition, bool) {
	p := &b.s.Policy
	if b.s.Trips < ^uint32(0) {
		b.s.Trips++
	}
	// Compared before multiplying, so that many trips cannot overflow.
	ej := p.MaxEjection
	if n := time.Duration(b.s.Trips); n <= p.MaxEjection/p.BaseEjection {
		ej = p.BaseEjection * n
	}
	b.clear()
	b.s.OpenedAt, b.s.Ejection, b.s.EjectedUntil = t, ej, t+int64(ej)
	return b.transition(t, Open, fmt.Sprintf("opened: %s; ejected for %s (trip %d)", why, ej, b.s.Trips))
}

// clear forgets the counts, a refused trip and the probe lease.
func (b *Breaker) clear() {
	b.s.Run, b.s.RunEdge, b.s.Window = run{}, "", window{}
	b.s.TripRefused = false
	b.s.ProbeHolder, b.s.ProbeUntil = "", 0
}

func (b *Breaker) transition(t int64, to State, reason string) (Transition, bool) {
	from := b.s.State
	b.s.State, b.s.Reason, b.s.Since = to, reason, t
	return Transition{From: from, To: to, At: unix(t), Reason: reason}, true
}

func (r run) total() uint64 { return r.Connect + r.Timeout + r.Status5xx }

// String reads "5 consecutive connect errors" for a run of one kind, else
// "6 consecutive failures (3 connect errors, 2 timeouts, 1 5xx)".
func (r run) String() string {
	var parts []string
	for _, k := range []struct {
		n         uint64
		one, many string
	}{{r.Connect, "connect error", "connect errors"}, {r.Timeout, "timeout", "timeouts"}, {r.Status5xx, "5xx", "5xx"}} {
		if k.n == 0 {
			continue
		}
		name := k.many
		if k.n == 1 {
			name = k.one
		}
		parts = append(parts, fmt.Sprintf("%d %s", k.n, name))
	}
	if len(parts) == 1 {
		n, name, _ := strings.Cut(parts[0], " ")
		return n + " consecutive " + name
	}
	return fmt.Sprintf("%d consecutive failures (%s)", r.total(), strings.Join(parts, ", "))
}
