package policy

import (
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// MaxPanicThresholdPercent is the largest panic_threshold_percent: with 100
// a cell panics (routes over every endpoint) as soon as one endpoint is out.
const MaxPanicThresholdPercent = 100

// Cell is what an edge applies of a cell's policies, converted once with
// every default filled in: edgenode/route builds one per cell when it
// builds a routing table, so that the request path reads typed values and
// never converts a proto. A Cell is comparable.
type Cell struct {
	// Breaker is the breaker policy, defaults filled in: the edge's gates
	// use its local trip, consecutive-failure threshold and probe lease.
	Breaker Breaker
	// Check is the active health check the edges run.
	Check Check
	// Auth is the authentication policy; Mode AUTH_MODE_UNSPECIFIED: none.
	Auth Auth
	// PanicThresholdPercent is panic_threshold_percent, larger values
	// counting as MaxPanicThresholdPercent; 0: panic routing is off.
	PanicThresholdPercent uint32
}

// CellOf converts the policies of c.
func CellOf(c *pb.Cell) Cell {
	return Cell{
		Breaker:               BreakerOf(c.GetBreaker()).WithDefaults(),
		Check:                 HealthCheck(c.GetHealthCheck()),
		Auth:                  AuthOf(c.GetAuth()),
		PanicThresholdPercent: min(c.GetPanicThresholdPercent(), MaxPanicThresholdPercent),
	}
}

// ValidateCell checks the policies of c (its auth policy, panic threshold,
// breaker and health-check policies, upstream TLS and upgrades, in that
// order) and returns the first
// problem as an *Error whose Field is relative to the cell
// ("breaker.max_ejection_percent", "auth.jwt.issuer"). A valid cell, the
// common case, costs no allocation.
func ValidateCell(c *pb.Cell) error { return orNil(checkCell(c)) }

func checkCell(c *pb.Cell) *Error {
	if a := c.GetAuth(); a != nil {
		if e := checkAuth(a); e != nil {
			return under("auth.", e)
		}
	}
	if p := c.GetPanicThresholdPercent(); p > MaxPanicThresholdPercent {
		return invalid("panic_threshold_percent", "panic_threshold_percent %d is over %d; use 0 (off) to %d, a percentage of the cell's endpoints",
			p, MaxPanicThresholdPercent, MaxPanicThresholdPercent)
	}
	if b := c.GetBreaker(); b != nil {
		if e := BreakerOf(b).check(); e != nil {
			return under("breaker.", e)
		}
	}
	if h := c.GetHealthCheck(); h != nil {
		if e := checkHealthCheck(h); e != nil {
			return under("health_check.", e)
		}
	}
	return checkUpstream(c)
}

// ms reads a proto duration field in milliseconds, the unit of every
// duration of the breaker and health-check policies.
func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
