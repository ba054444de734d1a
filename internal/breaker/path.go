package breaker

import (
	"sync/atomic"

	"github.com/edgecell/edgecell/internal/policy"
)

// Decision is what RequestPath.Check says about sending a new request to an
// endpoint.
type Decision uint8

const (
	// Allow: send.
	Allow Decision = iota
	// DenyOpen: the global breaker is open.
	DenyOpen
	// DenyHalfOpen: the global breaker is half-open; only the probe lease
	// holder probes it, outside the request path.
	DenyHalfOpen
	// DenyLocalTrip: this edge saw consecutive connection failures.
	DenyLocalTrip
)

// String returns the word X-Edge-Route uses: "allowed", "breaker-open",
// "breaker-half-open" or "local-trip".
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allowed"
	case DenyOpen:
		return "breaker-open"
	case DenyHalfOpen:
		return "breaker-half-open"
	case DenyLocalTrip:
		return "local-trip"
	}
	return "invalid"
}

// MaxRevision is the highest revision SetGlobal accepts: the revision shares
// a word with the state.
const MaxRevision = 1<<62 - 1

// RequestPath is an edge's gate for one endpoint, checked on the request
// path. It combines the global breaker state from the Watch stream with a
// local trip on connection failures.
//
// Precedence: a global Open or HalfOpen always denies. A local trip denies
// for at most LocalEjection, and only while no newer global state has
// arrived: it is stamped with the revision of the global state the edge held
// when it tripped, and SetGlobal with a higher revision overrides it (the
// coordinators' view, formed from every edge's reports after the trip, wins
// over this edge's older evidence). Re-announcing the same revision (a
// snapshot reset) does not override it.
//
// All methods are safe for concurrent use, lock-free and allocation-free,
// except ConnectFailed when it trips (one small allocation). The edge keeps
// one RequestPath per endpoint across snapshot swaps; a RequestPath must not
// be copied.
type RequestPath struct {
	// global is revision<<2 | State, so that both change in one store.
	global    atomic.Uint64
	local     atomic.Pointer[localTrip]
	failures  atomic.Uint32
	tripAfter uint32
	ejection  int64
}

// localTrip is immutable once published.
type localTrip struct {
	until    int64
	revision uint64
}

// NewRequestPath returns a closed gate at revision 0, using p's
// LocalConnectFailures and LocalEjection (zero fields take defaults).
func NewRequestPath(p policy.Breaker) *RequestPath {
	p = p.WithDefaults()
	return &RequestPath{tripAfter: p.LocalConnectFailures, ejection: int64(p.LocalEjection)}
}

// Allowed reports whether a new request may go to the endpoint at
// nowUnixNano. Hot path: a few atomic loads, no allocation.
func (r *RequestPath) Allowed(nowUnixNano int64) bool { return r.Check(nowUnixNano) == Allow }

// Check is Allowed with the reason, for X-Edge-Route and logs. Same cost.
func (r *RequestPath) Check(nowUnixNano int64) Decision {
	g := r.global.Load()
	switch State(g & 3) {
	case Open:
		return DenyOpen
	case HalfOpen:
		return DenyHalfOpen
	}
	if t := r.local.Load(); t != nil && nowUnixNano < t.until && t.revision >= g>>2 {
		return DenyLocalTrip
	}
	return Allow
}

// ConnectFailed records that a connection to the endpoint failed (refused,
// reset before the request was sent, connect timeout). The
// LocalConnectFailures-th consecutive one trips the endpoint locally until
// nowUnixNano + LocalEjection and returns true.
func (r *RequestPath) ConnectFailed(nowUnixNano int64) (tripped bool) {
	if r.failures.Add(1) < r.tripAfter {
		return false
	}
	r.failures.Store(0)
	r.local.Store(&localTrip{until: nowUnixNano + r.ejection, revision: r.global.Load() >> 2})
	return true
}

// ConnectSucceeded ends a run of connection failures. It writes only when
// there is a run, so that the common case does not bounce the cache line
// between cores.
func (r *RequestPath) ConnectSucceeded() {
	if r.failures.Load() != 0 {
		r.failures.Store(0)
	}
}

// SetGlobal applies the endpoint's global breaker state as of revision (the
// revision of the write that last changed it, not the edge's current
// revision). A revision below the one held is stale and ignored (false). A
// higher revision also ends a local trip taken before it. An invalid state
// or a revision above MaxRevision is ignored (false).
func (r *RequestPath) SetGlobal(s State, revision uint64) bool {
	if revision > MaxRevision || s > HalfOpen {
		return false
	}
	for {
		cur := r.global.Load()
		if revision < cur>>2 {
			return false
		}
		if r.global.CompareAndSwap(cur, revision<<2|uint64(s)) {
			break
		}
	}
	if t := r.local.Load(); t != nil && t.revision < revision {
		r.local.CompareAndSwap(t, nil)
		r.failures.Store(0)
	}
	return true
}

// Global returns the global state held and its revision.
func (r *RequestPath) Global() (State, uint64) {
	g := r.global.Load()
	return State(g & 3), g >> 2
}
