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
		MaxEjectionPercent:   p.GetMaxEjectionPercent(),
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

// Defaults of the active health check, as in the HealthCheckPolicy comments.
const (
	DefaultCheckPath     = "/healthz"
	DefaultCheckInterval = 5 * time.Second
	DefaultCheckTimeout  = time.Second
)

// Check is how an edge runs one endpoint's active health check, defaults
// filled in. It is comparable: an edge restarts a check when it changes.
type Check struct {
	// Path is requested with GET on the endpoint's URL; only a 2xx passes.
	Path string
	// Interval between two checks, plus a random delay in [0, Jitter].
	Interval, Jitter time.Duration
	// Timeout bounds one check; it is never above Interval.
	Timeout time.Duration
}

// HealthCheck converts a cell's health-check policy into the schedule an
// edge runs. The coordinators refuse a policy whose timeout exceeds its
// interval; here the timeout is capped all the same, so a check never
// outlives the next.
func HealthCheck(p *pb.HealthCheckPolicy) Check {
	c := Check{Path: p.GetHttpPath(), Interval: ms(p.GetIntervalMs()), Timeout: ms(p.GetTimeoutMs()), Jitter: ms(p.GetJitterMs())}
	if c.Path == "" {
		c.Path = DefaultCheckPath
	}
	if c.Interval <= 0 {
		c.Interval = DefaultCheckInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultCheckTimeout
	}
	c.Timeout = min(c.Timeout, c.Interval)
	return c
}

// Defaults and bounds of a cell's AuthPolicy.
const (
	DefaultTimestampWindow = 300 * time.Second
	MaxTimestampWindow     = time.Hour
	DefaultMaxBodyBytes    = 1 << 20
	MaxMaxBodyBytes        = 64 << 20
)

// Auth is a cell's authentication policy as an edge applies it, defaults
// filled in. Mode is AUTH_MODE_UNSPECIFIED for a cell without one.
type Auth struct {
	Mode pb.AuthMode
	// Window is how far X-Timestamp may be from the edge's clock.
	Window time.Duration
	// MaxBody is the largest signed body buffered for hashing.
	MaxBody int64
	// Issuer, Audience and JWKSURL are the JWT policy's.
	Issuer, Audience, JWKSURL string
}

// HMAC reports whether requests may be HMAC-signed; JWT whether they may
// carry a bearer token.
func (a Auth) HMAC() bool {
	return a.Mode == pb.AuthMode_AUTH_MODE_HMAC || a.Mode == pb.AuthMode_AUTH_MODE_HMAC_OR_JWT
}

// JWT reports whether requests may carry a bearer token.
func (a Auth) JWT() bool {
	return a.Mode == pb.AuthMode_AUTH_MODE_JWT || a.Mode == pb.AuthMode_AUTH_MODE_HMAC_OR_JWT
}

// AuthOf converts a cell's auth policy (nil: none).
func AuthOf(p *pb.AuthPolicy) Auth {
	a := Auth{
		Mode: p.GetMode(), Window: time.Duration(p.GetTimestampWindowS()) * time.Second, MaxBody: int64(p.GetMaxBodyBytes()),
		Issuer: p.GetJwt().GetIssuer(), Audience: p.GetJwt().GetAudience(), JWKSURL: p.GetJwt().GetJwksUrl(),
	}
	if a.Window <= 0 {
		a.Window = DefaultTimestampWindow
	}
	if a.MaxBody <= 0 {
		a.MaxBody = DefaultMaxBodyBytes
	}
	return a
}
