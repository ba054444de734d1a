package route

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/breaker"

	"github.com/edgecell/edgecell/internal/policy"
)

// t0 is the fake clock's origin.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newRequestPath returns a closed gate under p, as a Gate holds one.
func newRequestPath(p policy.Breaker) *requestPath {
	r := new(requestPath)
	r.init(p)
	return r
}

func TestRequestPathPrecedence(t *testing.T) {
	setGlobal := func(s breaker.State, rev uint64, applied bool) func(*testing.T, *requestPath, int64) {
		return func(t *testing.T, r *requestPath, _ int64) {
			if got := r.setGlobal(s, rev); got != applied {
				t.Fatalf("SetGlobal(%s, %d) = %v, want %v", s, rev, got, applied)
			}
		}
	}
	connectFailed := func(tripped bool) func(*testing.T, *requestPath, int64) {
		return func(t *testing.T, r *requestPath, now int64) {
			if got := r.connectFailed(now); got != tripped {
				t.Fatalf("ConnectFailed tripped = %v, want %v", got, tripped)
			}
		}
	}
	succeeded := func(_ *testing.T, r *requestPath, _ int64) { r.connectSucceeded() }
	type step struct {
		at   time.Duration
		do   func(*testing.T, *requestPath, int64)
		want Reason
	}
	const ms = time.Millisecond
	tripAtRev5 := []step{
		{0, setGlobal(breaker.Closed, 5, true), Allowed},
		{0, connectFailed(false), Allowed},
		{1 * ms, connectFailed(true), LocalTrip},
	}
	tests := []struct {
		name   string
		policy policy.Breaker
		steps  []step
	}{
		{name: "the second consecutive connect failure trips at once", steps: tripAtRev5},
		{
			name:   "a policy of one failure trips on the first",
			policy: policy.Breaker{LocalConnectFailures: 1},
			steps:  []step{{0, connectFailed(true), LocalTrip}},
		},
		{
			name: "a success between failures prevents the trip",
			steps: []step{
				{0, connectFailed(false), Allowed},
				{1 * ms, succeeded, Allowed},
				{2 * ms, connectFailed(false), Allowed},
			},
		},
		{
			name: "a local trip lasts LocalEjection",
			steps: append(tripAtRev5,
				step{3000 * ms, nil, LocalTrip},
				step{3001 * ms, nil, Allowed}),
		},
		{
			name:  "a newer global state overrides a local trip",
			steps: append(tripAtRev5, step{2 * ms, setGlobal(breaker.Closed, 6, true), Allowed}),
		},
		{
			name:  "the same global revision re-announced does not override it",
			steps: append(tripAtRev5, step{2 * ms, setGlobal(breaker.Closed, 5, true), LocalTrip}),
		},
		{
			name: "global open and half-open deny; closed allows",
			steps: []step{
				{0, setGlobal(breaker.Open, 3, true), BreakerOpen},
				{0, setGlobal(breaker.HalfOpen, 4, true), BreakerHalfOpen},
				{0, setGlobal(breaker.Closed, 5, true), Allowed},
			},
		},
		{
			name: "an older global state is ignored",
			steps: []step{
				{0, setGlobal(breaker.Open, 7, true), BreakerOpen},
				{0, setGlobal(breaker.Closed, 6, false), BreakerOpen},
			},
		},
		{
			name: "failures of requests in flight while open do not outlive the global close",
			steps: []step{
				{0, setGlobal(breaker.Open, 3, true), BreakerOpen},
				{0, connectFailed(false), BreakerOpen},
				{0, connectFailed(true), BreakerOpen},
				{1 * ms, setGlobal(breaker.Closed, 4, true), Allowed},
			},
		},
		{
			name: "invalid global input is ignored",
			steps: []step{
				{0, setGlobal(breaker.State(7), 1, false), Allowed},
				{0, setGlobal(breaker.Open, maxRevision+1, false), Allowed},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequestPath(tt.policy)
			for i, st := range tt.steps {
				now := t0.Add(st.at).UnixNano()
				if st.do != nil {
					st.do(t, r, now)
				}
				if got := r.check(now); got != st.want {
					t.Fatalf("step %d at %s: %s, want %s", i, st.at, got, st.want)
				}
			}
		})
	}
}

// TestRequestPathConcurrent runs the hot path against writers under -race.
func TestRequestPathConcurrent(t *testing.T) {
	now := t0.UnixNano()
	readers := func(r *requestPath, check func(Reason)) (stop func()) {
		var done atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for !done.Load() {
					check(r.check(now))
				}
			})
		}
		return func() { done.Store(true); wg.Wait() }
	}
	writers := func(n int, write func(i int)) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range n {
					write(w*n + i)
				}
			})
		}
		wg.Wait()
	}

	t.Run("stale global states and local trips never open a globally open endpoint", func(t *testing.T) {
		r := newRequestPath(policy.Breaker{})
		r.setGlobal(breaker.Open, 1<<40)
		var allowed atomic.Int64
		stop := readers(r, func(d Reason) {
			if d != BreakerOpen {
				allowed.Add(1)
			}
		})
		writers(2000, func(i int) {
			r.connectFailed(now)
			r.connectSucceeded()
			r.setGlobal(breaker.Closed, uint64(i))
		})
		stop()
		if n := allowed.Load(); n != 0 {
			t.Fatalf("%d checks of an open endpoint did not say breaker-open", n)
		}
	})

	t.Run("the newest global state wins over racing local trips", func(t *testing.T) {
		r := newRequestPath(policy.Breaker{LocalConnectFailures: 1})
		stop := readers(r, func(Reason) {})
		writers(2000, func(i int) {
			if i%2 == 0 {
				r.connectFailed(now)
			} else {
				r.setGlobal(breaker.Closed, uint64(i))
			}
		})
		stop()
		r.setGlobal(breaker.Closed, 1<<20)
		if d := r.check(now); d != Allowed {
			t.Fatalf("after a newer global close: %s, want allowed", d)
		}
	})
}

// BenchmarkAllowed is the breaker half of the edge's per-request check
// (target: < 50 ns, 0 allocs); it was internal/breaker's.
func BenchmarkAllowed(b *testing.B) {
	for _, c := range []struct {
		name  string
		setup func(r *requestPath, now int64)
	}{
		{"closed", func(*requestPath, int64) {}},
		{"local-trip", func(r *requestPath, now int64) { r.connectFailed(now); r.connectFailed(now) }},
		{"open", func(r *requestPath, _ int64) { r.setGlobal(breaker.Open, 9) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := newRequestPath(policy.Breaker{})
			now := t0.UnixNano()
			c.setup(r, now)
			b.ReportAllocs()
			for b.Loop() {
				r.check(now)
			}
		})
	}
	b.Run("closed-parallel", func(b *testing.B) {
		r := newRequestPath(policy.Breaker{})
		now := t0.UnixNano()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.check(now)
			}
		})
	})
}
