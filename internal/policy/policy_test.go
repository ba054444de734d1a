package policy

import (
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestMillisecondsBecomeDurationsAndNilIsAllDefaults(t *testing.T) {
	b := BreakerOf(&pb.BreakerPolicy{ConsecutiveFailures: 7, BaseEjectionMs: 1500, LocalEjectionMs: 250, MaxEjectionPercent: 100})
	if b.ConsecutiveFailures != 7 || b.BaseEjection != 1500*time.Millisecond || b.LocalEjection != 250*time.Millisecond || b.MaxEjectionPercent != 100 {
		t.Fatalf("breaker policy %+v", b)
	}
	h := HealthOf(&pb.HealthCheckPolicy{HealthyThreshold: 3, StaleAfterMs: 2000})
	if h.HealthyThreshold != 3 || h.StaleAfter != 2*time.Second {
		t.Fatalf("health policy %+v", h)
	}
	if BreakerOf(nil) != (BreakerOf(&pb.BreakerPolicy{})) || HealthOf(nil) != (HealthOf(&pb.HealthCheckPolicy{})) {
		t.Fatal("a missing policy must read as an empty one (every default)")
	}
}
