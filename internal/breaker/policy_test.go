package breaker

import (
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

func TestNewNeverFails(t *testing.T) {
	// An invalid policy that slipped into the state must still give a breaker
	// that works: apply cannot refuse.
	b := New(policy.Breaker{FailureRateThreshold: 7, Window: -1, BaseEjection: time.Minute, MaxEjection: time.Second, MaxEjectionPercent: 101})
	got := b.Policy()
	if got.FailureRateThreshold != policy.DefaultFailureRateThreshold || got.Window != policy.DefaultWindow || got.MaxEjection != time.Minute || got.MaxEjectionPercent != policy.DefaultMaxEjectionPercent {
		t.Fatalf("policy %+v: want defaults for invalid fields and max raised to base", got)
	}
	if got := policy.DefaultBreaker(); got.ConsecutiveFailures != 5 || got.MinRequests != 20 || got.MaxEjection != 300*time.Second || got.ProbeLease != 2*time.Second || got.MaxEjectionPercent != 50 {
		t.Fatalf("defaults %+v do not match the documented ones", got)
	}
}
