package breaker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

func TestRequestPathPrecedence(t *testing.T) {
	setGlobal := func(s State, rev uint64, applied bool) func(*testing.T, *RequestPath, int64) {
		return func(t *testing.T, r *RequestPath, _ int64) {
			if got := r.SetGlobal(s, rev); got != applied {
				t.Fatalf("SetGlobal(%s, %d) = %v, want %v", s, rev, got, applied)
			}
		}
	}
	connectFailed := func(tripped bool) func(*testing.T, *RequestPath, int64) {
		return func(t *testing.T, r *RequestPath, now int64) {
			if got := r.ConnectFailed(now); got != tripped {
				t.Fatalf("ConnectFailed tripped = %v, want %v", got, tripped)
			}
		}
	}
	succeeded := func(_ *testing.T, r *RequestPath, _ int64) { r.ConnectSucceeded() }
	type step struct {
		at   time.Duration
		do   func(*testing.T, *RequestPath, int64)
		want Decision
	}
	const ms = time.Millisecond
	tripAtRev5 := []step{
		{0, setGlobal(Closed, 5, true), Allow},
		{0, connectFailed(false), Allow},
		{1 * ms, connectFailed(true), DenyLocalTrip},
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
			steps:  []step{{0, connectFailed(true), DenyLocalTrip}},
		},
		{
			name: "a success between failures prevents the trip",
			steps: []step{
				{0, connectFailed(false), Allow},
				{1 * ms, succeeded, Allow},
				{2 * ms, connectFailed(false), Allow},
			},
		},
		{
			name: "a local trip lasts LocalEjection",
			steps: append(tripAtRev5,
				step{3000 * ms, nil, DenyLocalTrip},
				step{3001 * ms, nil, Allow}),
		},
		{
			name:  "a newer global state overrides a local trip",
			steps: append(tripAtRev5, step{2 * ms, setGlobal(Closed, 6, true), Allow}),
		},
		{
			name:  "the same global revision re-announced does not override it",
			steps: append(tripAtRev5, step{2 * ms, setGlobal(Closed, 5, true), DenyLocalTrip}),
		},
		{
			name: "global open and half-open deny; closed allows",
			steps: []step{
				{0, setGlobal(Open, 3, true), DenyOpen},
				{0, setGlobal(HalfOpen, 4, true), DenyHalfOpen},
				{0, setGlobal(Closed, 5, true), Allow},
			},
		},
		{
			name: "an older global state is ignored",
			steps: []step{
				{0, setGlobal(Open, 7, true), DenyOpen},
				{0, setGlobal(Closed, 6, false), DenyOpen},
			},
		},
		{
			name: "failures of requests in flight while open do not outlive the global close",
			steps: []step{
				{0, setGlobal(Open, 3, true), DenyOpen},
				{0, connectFailed(false), DenyOpen},
				{0, connectFailed(true), DenyOpen},
				{1 * ms, setGlobal(Closed, 4, true), Allow},
			},
		},
		{
			name: "invalid global input is ignored",
			steps: []step{
				{0, setGlobal(State(7), 1, false), Allow},
				{0, setGlobal(Open, MaxRevision+1, false), Allow},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRequestPath(tt.policy)
			for i, st := range tt.steps {
				now := t0.Add(st.at).UnixNano()
				if st.do != nil {
					st.do(t, r, now)
				}
				if got := r.Check(now); got != st.want {
					t.Fatalf("step %d at %s: %s, want %s", i, st.at, got, st.want)
				}
				if r.Allowed(now) != (st.want == Allow) {
					t.Fatalf("step %d: Allowed disagrees with Check", i)
				}
			}
		})
	}
}

// TestRequestPathConcurrent runs the hot path against writers under -race.
func TestRequestPathConcurrent(t *testing.T) {
	now := t0.UnixNano()
	readers := func(r *RequestPath, check func(Decision)) (stop func()) {
		var done atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for !done.Load() {
					check(r.Check(now))
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
		r := NewRequestPath(policy.Breaker{})
		r.SetGlobal(Open, 1<<40)
		var allowed atomic.Int64
		stop := readers(r, func(d Decision) {
			if d != DenyOpen {
				allowed.Add(1)
			}
		})
		writers(2000, func(i int) {
			r.ConnectFailed(now)
			r.ConnectSucceeded()
			r.SetGlobal(Closed, uint64(i))
		})
		stop()
		if n := allowed.Load(); n != 0 {
			t.Fatalf("%d checks of an open endpoint did not say breaker-open", n)
		}
	})

	t.Run("the newest global state wins over racing local trips", func(t *testing.T) {
		r := NewRequestPath(policy.Breaker{LocalConnectFailures: 1})
		stop := readers(r, func(Decision) {})
		writers(2000, func(i int) {
			if i%2 == 0 {
				r.ConnectFailed(now)
			} else {
				r.SetGlobal(Closed, uint64(i))
			}
		})
		stop()
		r.SetGlobal(Closed, 1<<20)
		if d := r.Check(now); d != Allow {
			t.Fatalf("after a newer global close: %s, want allowed", d)
		}
	})
}
