package policy

import (
	"strings"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// A cell's HealthCheckPolicy is two things: how the coordinators aggregate
// check results into a verdict (Health, for internal/health) and how an edge
// runs the checks (Check).

// Defaults of Health, those of Envoy's active health checking.
const (
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
	DefaultStaleAfter         = 30 * time.Second
)

// Health configures the aggregation of one endpoint's checks. A zero field
// means its default. The field names are part of the coordinators' snapshot
// encoding (internal/health): do not rename them.
type Health struct {
	// HealthyThreshold consecutive passes make an edge see the endpoint healthy.
	HealthyThreshold uint32
	// UnhealthyThreshold consecutive failures make it see it unhealthy.
	UnhealthyThreshold uint32
	// StaleAfter: an edge that has not reported for this long no longer
	// counts. Set it to a few check intervals plus the report batching delay.
	StaleAfter time.Duration
}

// HealthOf converts a cell's health-check policy (nil: every default) into
// its aggregation part. Zero fields stay zero; WithDefaults fills them.
func HealthOf(p *pb.HealthCheckPolicy) Health {
	return Health{
		HealthyThreshold:   p.GetHealthyThreshold(),
		UnhealthyThreshold: p.GetUnhealthyThreshold(),
		StaleAfter:         ms(p.GetStaleAfterMs()),
	}
}

// Validate reports an invalid field as an *Error naming the proto field
// ("stale_after_ms"). WithDefaults never fails: it takes the default instead.
func (p Health) Validate() error { return orNil(p.check()) }

func (p Health) check() *Error {
	if p.StaleAfter < 0 {
		return invalid("stale_after_ms", "is %s; it must not be negative (0 means the default %s)", p.StaleAfter, DefaultStaleAfter)
	}
	return nil
}

// WithDefaults fills zero and invalid fields.
func (p Health) WithDefaults() Health {
	orCount(&p.HealthyThreshold, DefaultHealthyThreshold)
	orCount(&p.UnhealthyThreshold, DefaultUnhealthyThreshold)
	orDuration(&p.StaleAfter, DefaultStaleAfter)
	return p
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
	orDuration(&c.Interval, DefaultCheckInterval)
	orDuration(&c.Timeout, DefaultCheckTimeout)
	c.Timeout = min(c.Timeout, c.Interval)
	return c
}

// checkHealthCheck validates a cell's health-check policy, both parts;
// fields are relative to it ("timeout_ms").
func checkHealthCheck(h *pb.HealthCheckPolicy) *Error {
	if e := HealthOf(h).check(); e != nil {
		return e
	}
	if p := h.GetHttpPath(); p != "" && !strings.HasPrefix(p, "/") {
		return invalid("http_path", "http_path %q must start with '/', for example %q", p, DefaultCheckPath)
	}
	interval, timeout := HealthCheck(h).Interval, ms(h.GetTimeoutMs())
	if timeout > interval {
		return invalid("timeout_ms", "timeout_ms %d is longer than interval_ms %d; a check must end before the next one starts",
			timeout.Milliseconds(), interval.Milliseconds())
	}
	return nil
}
