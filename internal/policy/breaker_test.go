package policy

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
		p     Breaker
		field string // empty: valid
	}{
		{"zero means defaults", Breaker{}, ""},
		{"explicit values", Breaker{ConsecutiveFailures: 3, FailureRateThreshold: 1, Window: time.Minute, BaseEjection: time.Second, MaxEjection: time.Second}, ""},
		{"negative duration", Breaker{ProbeLease: -time.Second}, "probe_lease"},
		{"rate above 1", Breaker{FailureRateThreshold: 50}, "failure_rate_threshold"},
		{"rate NaN", Breaker{FailureRateThreshold: math.NaN()}, "failure_rate_threshold"},
		{"window too short for its buckets", Breaker{Window: time.Millisecond}, "window"},
		{"max below base", Breaker{BaseEjection: time.Minute, MaxEjection: time.Second}, "max_ejection"},
		{"max below the default base", Breaker{MaxEjection: time.Second}, "max_ejection"},
		{"every endpoint may be ejected", Breaker{MaxEjectionPercent: 100}, ""},
		{"one percent", Breaker{MaxEjectionPercent: 1}, ""},
		{"over 100 percent", Breaker{MaxEjectionPercent: 101}, "max_ejection_percent"},
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
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %v: want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
}
