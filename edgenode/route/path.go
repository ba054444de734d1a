package route

import (
	"sync/atomic"

	"github.com/edgecell/edgecell/internal/breaker"
	"github.com/edgecell/edgecell/internal/policy"
)

// maxRevision is the highest revision setGlobal accepts: the revision shares
// a word with the state.
const maxRevision = 1<<62 - 1

// requestPath is the breaker half of an endpoint's Gate, checked on the
// request path: one or two atomic loads, no lock, no allocation. It follows
// the global breaker state the Watch stream delivers (the coordinators'
// internal/breaker.Breaker), and also trips locally at once after
// LocalConnectFailures consecutive connection failures, for at most
// LocalEjection, so that a dead backend stops receiving requests before the
// coordinators have decided anything.
//
// Precedence: a global Open or HalfOpen always denies. A local trip denies
// for at most LocalEjection, and only while no newer global state has
// arrived: it is stamped with the revision of the global state the edge held
// when it tripped, and setGlobal with a higher revision overrides it (the
// coordinators' view, formed from every edge's reports after the trip, wins
// over this edge's older evidence). Re-announcing the same revision (a
// snapshot reset) does not override it.
//
// All methods are safe for concurrent use, lock-free and allocation-free,
// except connectFailed when it trips (one small allocation). It lives inside
// its Gate, which the edge keeps across snapshot swaps; it must not be
// copied once in use.
type requestPath struct {
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

// init sets up a closed gate at revision 0 with p's LocalConnectFailures
// and LocalEjection (zero fields take their defaults).
func (r *requestPath) init(p policy.Breaker) {
	p = p.WithDefaults()
	r.tripAfter, r.ejection = p.LocalConnectFailures, int64(p.LocalEjection)
}

// check says whether a new request may go to the endpoint at nowUnixNano,
// as far as breakers are concerned: Allowed, BreakerOpen, BreakerHalfOpen
// or LocalTrip. Hot path: a few atomic loads, no allocation.
func (r *requestPath) check(nowUnixNano int64) Reason {
	g := r.global.Load()
	switch breaker.State(g & 3) {
	case breaker.Open:
		return BreakerOpen
	case breaker.HalfOpen:
		return BreakerHalfOpen
	}
	if t := r.local.Load(); t != nil && nowUnixNano < t.until && t.revision >= g>>2 {
		return LocalTrip
	}
	return Allowed
}

// connectFailed records that a connection to the endpoint failed (refused,
// reset before the request was sent, connect timeout). The
// LocalConnectFailures-th consecutive one trips the endpoint locally until
// nowUnixNano + LocalEjection and returns true.
func (r *requestPath) connectFailed(nowUnixNano int64) (tripped bool) {
	if r.failures.Add(1) < r.tripAfter {
		return false
	}
	r.failures.Store(0)
	r.local.Store(&localTrip{until: nowUnixNano + r.ejection, revision: r.global.Load() >> 2})
	return true
}

// connectSucceeded ends a run of connection failures. It writes only when
// there is a run, so that the common case does not bounce the cache line
// between cores.
func (r *requestPath) connectSucceeded() {
	if r.failures.Load() != 0 {
		r.failures.Store(0)
	}
}

// setGlobal applies the endpoint's global breaker state as of revision (the
// revision of the write that last changed it, not the edge's current
// revision). A revision below the one held is stale and ignored (false). A
// higher revision also ends a local trip taken before it. An invalid state
// or a revision above maxRevision is ignored (false).
func (r *requestPath) setGlobal(s breaker.State, revision uint64) bool {
	if revision > maxRevision || s > breaker.HalfOpen {
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

// state returns the global state held and its revision.
func (r *requestPath) state() (breaker.State, uint64) {
	g := r.global.Load()
	return breaker.State(g & 3), g >> 2
}
