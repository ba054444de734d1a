package policy

import (
	"cmp"
	"math"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Defaults of Breaker, chosen to match Envoy's outlier detection where it
// has an equivalent. DefaultMaxEjectionPercent is not Envoy's 10: Envoy
// always lets one host go whatever the percentage, the cap here does not
// (see Breaker.MaxEjected), and 50 keeps a cell of two or more endpoints
// able to eject one while reports alone can never take a whole cell out.
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

// WindowBuckets is how many fixed time buckets make up the breaker's
// failure-rate window; each covers Window/WindowBuckets, so a Window is at
// least WindowBuckets milliseconds.
const WindowBuckets = 10

// Breaker configures one endpoint's breaker (internal/breaker) and its
// edges' local trip (edgenode/route): a cell's BreakerPolicy. A zero field
// means its default (the Default... constants). The field names are part of
// the coordinators' snapshot encoding (internal/breaker): do not rename them.
type Breaker struct {
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
	// see MaxEjected. A breaker only stores it; the caller that knows the
	// cell enforces it.
	MaxEjectionPercent uint32
}

// BreakerOf converts a cell's breaker policy (nil: every default). Zero
// fields stay zero; WithDefaults fills them.
func BreakerOf(p *pb.BreakerPolicy) Breaker {
	return Breaker{
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
		MaxEjectionPercent:   p.GetMaxEjectionPercent(),
	}
}

// DefaultBreaker returns the breaker policy with every default filled in.
func DefaultBreaker() Breaker { return Breaker{}.WithDefaults() }

// Validate reports the first invalid field as an *Error naming the proto
// field ("window_ms"). The coordinators call it so that an operator hears
// about a bad value; WithDefaults never fails and replaces invalid values
// by defaults, because a raft apply must not fail.
func (p Breaker) Validate() error { return orNil(p.check()) }

func (p Breaker) check() *Error {
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"window_ms", p.Window}, {"base_ejection_ms", p.BaseEjection}, {"max_ejection_ms", p.MaxEjection},
		{"trip_decay_ms", p.TripDecay}, {"probe_lease_ms", p.ProbeLease}, {"local_ejection_ms", p.LocalEjection},
	} {
		if d.v < 0 {
			return invalid(d.field, "is %s; it must not be negative (0 means the default)", d.v)
		}
	}
	if p.MaxEjectionPercent > MaxMaxEjectionPercent {
		return invalid("max_ejection_percent", "is %d; it must be in [1, %d], a percentage of the cell's endpoints (0 means the default %d; %d lets breakers eject every endpoint)",
			p.MaxEjectionPercent, MaxMaxEjectionPercent, DefaultMaxEjectionPercent, MaxMaxEjectionPercent)
	}
	if r := p.FailureRateThreshold; r < 0 || r > 1 || math.IsNaN(r) {
		return invalid("failure_rate_threshold", "is %v; it must be in (0, 1], for example 0.5 (0 means the default)", r)
	}
	if p.Window != 0 && p.Window < WindowBuckets*time.Millisecond {
		return invalid("window_ms", "is %s; it must be at least %s", p.Window, WindowBuckets*time.Millisecond)
	}
	base := cmp.Or(p.BaseEjection, DefaultBaseEjection)
	if p.MaxEjection != 0 && p.MaxEjection < base {
		return invalid("max_ejection_ms", "is %s, below base_ejection %s", p.MaxEjection, base)
	}
	return nil
}

// WithDefaults fills zero and invalid fields, so that any Breaker yields a
// working breaker.
func (p Breaker) WithDefaults() Breaker {
	orCount(&p.ConsecutiveFailures, DefaultConsecutiveFailures)
	orCount(&p.MinRequests, DefaultMinRequests)
	orCount(&p.LocalConnectFailures, DefaultLocalConnectFailures)
	if p.MaxEjectionPercent == 0 || p.MaxEjectionPercent > MaxMaxEjectionPercent {
		p.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	if r := p.FailureRateThreshold; !(r > 0 && r <= 1) {
		p.FailureRateThreshold = DefaultFailureRateThreshold
	}
	orDuration(&p.Window, DefaultWindow)
	if p.Window < WindowBuckets*time.Millisecond {
		p.Window = WindowBuckets * time.Millisecond
	}
	orDuration(&p.BaseEjection, DefaultBaseEjection)
	orDuration(&p.MaxEjection, DefaultMaxEjection)
	p.MaxEjection = max(p.MaxEjection, p.BaseEjection)
	orDuration(&p.TripDecay, DefaultTripDecay)
	orDuration(&p.ProbeLease, DefaultProbeLease)
	orDuration(&p.LocalEjection, DefaultLocalEjection)
	return p
}

// MaxEjected is how many of a cell's endpoints open breakers may keep out at
// once under p (zero or invalid fields taking their defaults): the largest
// count whose share of endpoints is at most MaxEjectionPercent, that is
// floor(endpoints × MaxEjectionPercent / 100). Unlike Envoy, which ejects one
// host whatever the percentage, it may be 0: with the default 50 a cell of
// one endpoint never has it ejected, one of two or three endpoints may be,
// two of four; only 100 allows every endpoint.
func (p Breaker) MaxEjected(endpoints int) int {
	if endpoints <= 0 {
		return 0
	}
	return endpoints * int(p.WithDefaults().MaxEjectionPercent) / 100
}

// orCount sets a zero count to its default d.
func orCount(v *uint32, d uint32) {
	if *v == 0 {
		*v = d
	}
}

// orDuration sets a zero or negative duration to its default d.
func orDuration(v *time.Duration, d time.Duration) {
	if *v <= 0 {
		*v = d
	}
}
