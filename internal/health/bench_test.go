package health

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

// BenchmarkReport is one edge's batch applied to an endpoint watched by 16
// edges, which take turns reporting.
func BenchmarkReport(b *testing.B) {
	s := New(policy.Health{})
	reports := make([]Report, 16)
	for i := range reports {
		reports[i] = Report{Edge: fmt.Sprintf("edge-%02d", i), Region: "us-east", Checks: checks("ppp")}
	}
	now := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(100 * time.Millisecond)
		s.Report(now, reports[i%len(reports)])
		i++
	}
	if n := len(s.Observations()); n != len(reports) {
		b.Fatalf("%d edges remembered, want %d", n, len(reports))
	}
}
