package breaker

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name  string
		p     Policy
		field string // empty: valid
	}{
		{"zero means defaults", Policy{}, ""},
		{"explicit values", Policy{ConsecutiveFailures: 3, FailureRateThreshold: 1, Window: time.Minute, BaseEjection: time.Second, MaxEjection: time.Second}, ""},
		{"negative duration", Policy{ProbeLease: -time.Second}, "probe_lease"},
		{"rate above 1", Policy{FailureRateThreshold: 50}, "failure_rate_threshold"},
		{"rate NaN", Policy{FailureRateThreshold: math.NaN()}, "failure_rate_threshold"},
		{"window too short for its buckets", Policy{Window: time.Millisecond}, "window"},
		{"max below base", Policy{BaseEjection: time.Minute, MaxEjection: time.Second}, "max_ejection"},
		{"max below the default base", Policy{MaxEjection: time.Second}, "max_ejection"},
		{"every endpoint may be ejected", Policy{MaxEjectionPercent: 100}, ""},
		{"one percent", Policy{MaxEjectionPercent: 1}, ""},
		{"over 100 percent", Policy{MaxEjectionPercent: 101}, "max_ejection_percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid policy refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %v: want ErrInvalidPolicy naming %s", err, tt.field)
			}
		})
	}
}

func TestNewNeverFails(t *testing.T) {
	// An invalid policy that slipped into the state must still give a breaker
	// that works: apply cannot refuse.
	b := New(Policy{FailureRateThreshold: 7, Window: -1, BaseEjection: time.Minute, MaxEjection: time.Second, MaxEjectionPercent: 101})
	got := b.Policy()
	if got.FailureRateThreshold != DefaultFailureRateThreshold || got.Window != DefaultWindow || got.MaxEjection != time.Minute || got.MaxEjectionPercent != DefaultMaxEjectionPercent {
		t.Fatalf("policy %+v: want defaults for invalid fields and max raised to base", got)
	}
	if got := DefaultPolicy(); got.ConsecutiveFailures != 5 || got.MinRequests != 20 || got.MaxEjection != 300*time.Second || got.ProbeLease != 2*time.Second || got.MaxEjectionPercent != 50 {
		t.Fatalf("defaults %+v do not match the documented ones", got)
	}
}
