package breaker

import (
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

// BenchmarkAllowed is the edge's per-request check (target: < 50 ns, 0 allocs).
func BenchmarkAllowed(b *testing.B) {
	for _, c := range []struct {
		name  string
		setup func(r *RequestPath, now int64)
	}{
		{"closed", func(*RequestPath, int64) {}},
		{"local-trip", func(r *RequestPath, now int64) { r.ConnectFailed(now); r.ConnectFailed(now) }},
		{"open", func(r *RequestPath, _ int64) { r.SetGlobal(Open, 9) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := NewRequestPath(policy.Breaker{})
			now := t0.UnixNano()
			c.setup(r, now)
			b.ReportAllocs()
			for b.Loop() {
				r.Allowed(now)
			}
		})
	}
	b.Run("closed-parallel", func(b *testing.B) {
		r := NewRequestPath(policy.Breaker{})
		now := t0.UnixNano()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.Allowed(now)
			}
		})
	})
}

// BenchmarkObserve is one outcome batch applied by the state machine to a
// closed breaker, a bucket further each time.
func BenchmarkObserve(b *testing.B) {
	br := New(policy.Breaker{})
	o := Outcomes{Successes: 90, Status5xx: 3, Timeouts: 1, Edge: "edge-eu-1"}
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(250 * time.Millisecond)
		if _, tripped := br.Observe(now, o); tripped {
			b.Fatal("a 4% failure rate tripped the breaker")
		}
	}
}
