package breaker

import (
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

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
