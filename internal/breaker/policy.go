package breaker

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults of Policy, chosen to match Envoy's outlier detection where it has
// an equivalent. DefaultMaxEjectionPercent is not Envoy's 10: Envoy always
// lets one host go whatever the percentage, the cap here does not (see
// Policy.MaxEjected), and 50 keeps a cell of two or more endpoints able to
// eject one while reports alone can never take a whole cell out.
const (
	DefaultConsecutiveFailures  = 5
	DefaultFailureRateThreshold = 0.5
	DefaultWindow               = 10 * time.Second
	DefaultMinRequests          = 20
	DefaultBaseEjection         = 5 * time.Second
	DefaultMaxEjection          = 300 * time.Second
	DefaultTripDecay            = 30 * time.Second
	DefaultProbeLease           = 2 * time.Second
	DefaultLocalConnectFailures = 2
	DefaultLocalEjection        = 3 * time.Second
	DefaultMaxEjectionPercent   = 50
)

// MaxMaxEjectionPercent is the largest MaxEjectionPercent: every endpoint of
// a cell may be ejected.
const MaxMaxEjectionPercent = 100

// WindowBuckets is how many fixed time buckets make up the failure-rate
// window; each covers Window/WindowBuckets.
const WindowBuckets = 10

// ErrInvalidPolicy is returned (wrapped, naming the field) by Policy.Validate.
var ErrInvalidPolicy = errors.New("invalid breaker policy")

// PolicyError is the error Policy.Validate returns: Field is the offending
// field's name in snake case ("window", "max_ejection"), as the routing
// config spells it without its unit suffix, so a caller can build a path.
// It matches ErrInvalidPolicy with errors.Is.
type PolicyError struct{ Field, Reason string }

func (e *PolicyError) Error() string {
	return fmt.Sprintf("%s: %s %s", ErrInvalidPolicy, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) true.
func (e *PolicyError) Unwrap() error { return ErrInvalidPolicy }

// Policy configures one endpoint's breaker and its edges' local trip. A zero
// field means its default (the Default... constants).
type Policy struct {
	// ConsecutiveFailures failures with no success between them open the breaker.
	ConsecutiveFailures uint32
	// FailureRateThreshold in (0, 1]: failures/requests over Window at or
	// above it open the breaker, once MinRequests requests were seen.
	FailureRateThreshold float64
	Window               time.Duration
	MinRequests          uint32
	// BaseEjection * trips is how long a trip keeps the endpoint out, capped
	// at MaxEjection.
	BaseEjection time.Duration
	MaxEjection  time.Duration
	// TripDecay: each full TripDecay the breaker stays closed forgets one trip.
	TripDecay time.Duration
	// ProbeLease is how long a half-open breaker waits for its probing edge
	// before it lets another edge probe.
	ProbeLease time.Duration
	// LocalConnectFailures consecutive connection failures seen by one edge
	// trip the endpoint on that edge at once, for LocalEjection.
	LocalConnectFailures uint32
	LocalEjection        time.Duration
	// MaxEjectionPercent in [1, 100] caps the share of a cell's endpoints
	// that open breakers may keep out at once (Envoy's max_ejection_percent):
	// see MaxEjected. A Breaker only stores it; the caller that knows the
	// cell enforces it (ObserveCapped).
	MaxEjectionPercent uint32
}

// DefaultPolicy returns the policy with every default filled in.
func DefaultPolicy() Policy { return Policy{}.withDefaults() }

// Validate reports the first invalid field as a *PolicyError, which wraps ErrInvalidPolicy.
// The config layer calls it so that an operator hears about a bad value;
// New and SetPolicy never fail and replace invalid values by defaults,
// because a raft apply must not.
func (p Policy) Validate() error {
	bad := func(field, why string) error { return &PolicyError{Field: field, Reason: why} }
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"window", p.Window}, {"base_ejection", p.BaseEjection}, {"max_ejection", p.MaxEjection},
		{"trip_decay", p.TripDecay}, {"probe_lease", p.ProbeLease}, {"local_ejection", p.LocalEjection},
	} {
		if d.v < 0 {
			return bad(d.name, fmt.Sprintf("is %s; it must not be negative (0 means the default)", d.v))
		}
	}
	if p.MaxEjectionPercent > MaxMaxEjectionPercent {
		return bad("max_ejection_percent", fmt.Sprintf("is %d; it must be in [1, %d], a percentage of the cell's endpoints (0 means the default %d; %d lets breakers eject every endpoint)",
			p.MaxEjectionPercent, MaxMaxEjectionPercent, DefaultMaxEjectionPercent, MaxMaxEjectionPercent))
	}
	if r := p.FailureRateThreshold; r < 0 || r > 1 || math.IsNaN(r) {
		return bad("failure_rate_threshold", fmt.Sprintf("is %v; it must be in (0, 1], for example 0.5 (0 means the default)", r))
	}
	if p.Window != 0 && p.Window < WindowBuckets*time.Millisecond {
		return bad("window", fmt.Sprintf("is %s; it must be at least %s", p.Window, WindowBuckets*time.Millisecond))
	}
	base := cmp.Or(p.BaseEjection, DefaultBaseEjection)
	if p.MaxEjection != 0 && p.MaxEjection < base {
		return bad("max_ejection", fmt.Sprintf("is %s, below base_ejection %s", p.MaxEjection, base))
	}
	return nil
}

// withDefaults fills zero and invalid fields, so that any Policy yields a
// working breaker.
func (p Policy) withDefaults() Policy {
	orCount := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	orDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	orCount(&p.ConsecutiveFailures, DefaultConsecutiveFailures)
	orCount(&p.MinRequests, DefaultMinRequests)
	orCount(&p.LocalConnectFailures, DefaultLocalConnectFailures)
	if p.MaxEjectionPercent == 0 || p.MaxEjectionPercent > MaxMaxEjectionPercent {
		p.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	if r := p.FailureRateThreshold; !(r > 0 && r <= 1) {
		p.FailureRateThreshold = DefaultFailureRateThreshold
	}
	orDur(&p.Window, DefaultWindow)
	if p.Window < WindowBuckets*time.Millisecond {
		p.Window = WindowBuckets * time.Millisecond
	}
	orDur(&p.BaseEjection, DefaultBaseEjection)
	orDur(&p.MaxEjection, DefaultMaxEjection)
	p.MaxEjection = max(p.MaxEjection, p.BaseEjection)
	orDur(&p.TripDecay, DefaultTripDecay)
	orDur(&p.ProbeLease, DefaultProbeLease)
	orDur(&p.LocalEjection, DefaultLocalEjection)
	return p
}

// MaxEjected is how many of a cell's endpoints open breakers may keep out at
// once under p (zero or invalid fields taking their defaults): the largest
// count whose share of endpoints is at most MaxEjectionPercent, that is
// floor(endpoints × MaxEjectionPercent / 100). Unlike Envoy, which ejects one
// host whatever the percentage, it may be 0: with the default 50 a cell of
// one endpoint never has it ejected, one of two or three endpoints may be,
// two of four; only 100 allows every endpoint.
func (p Policy) MaxEjected(endpoints int) int {
	if endpoints <= 0 {
		return 0
	}
	return endpoints * int(p.withDefaults().MaxEjectionPercent) / 100
}
