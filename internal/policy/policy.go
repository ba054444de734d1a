// Package policy converts a cell's breaker and health-check policies from
// their wire form (proto, durations in milliseconds, zero meaning "default")
// into the internal/breaker and internal/health policies. Coordinators and
// edges both use it, so the two sides can never read a policy differently.
package policy

import (
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/breaker"
	"github.com/edgecell/edgecell/internal/health"
)

func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// Breaker converts a cell's breaker policy (nil: every default). Zero fields
// stay zero here; breaker.New and SetPolicy fill in the defaults.
func Breaker(p *pb.BreakerPolicy) breaker.Policy {
	return breaker.Policy{
		ConsecutiveFailures:  p.GetConsecutiveFailures(),
		FailureRateThreshold: p.GetFailureRateThreshold(),
		Window:               ms(p.GetWindowMs()),
		MinRequests:          p.GetMinRequests(),
		BaseEjection:         ms(p.GetBaseEjectionMs()),
		MaxEjection:          ms(p.GetMaxEjectionMs()),
		TripDecay:            ms(p.GetTripDecayMs()),
		ProbeLease:           ms(p.GetProbeLeaseMs()),
		LocalConnectFailures: p.GetLocalConnectFailures(),
		LocalEjection:        ms(p.GetLocalEjectionMs()),
	}
}

// Health converts a cell's health-check policy (nil: every default) into the
// aggregation policy of the health package.
func Health(p *pb.HealthCheckPolicy) health.Policy {
	return health.Policy{
		HealthyThreshold:   p.GetHealthyThreshold(),
		UnhealthyThreshold: p.GetUnhealthyThreshold(),
		StaleAfter:         ms(p.GetStaleAfterMs()),
	}
}
