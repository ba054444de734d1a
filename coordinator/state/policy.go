package state

import (
	"errors"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/breaker"
	"github.com/edgecell/edgecell/internal/health"
	"github.com/edgecell/edgecell/internal/policy"
)

func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// BreakerPolicy converts a cell's breaker policy (nil: every default) into
// the breaker package's; see internal/policy, which the edges share.
func BreakerPolicy(p *pb.BreakerPolicy) breaker.Policy { return policy.Breaker(p) }

// HealthPolicy converts a cell's health check policy (nil: every default)
// into the aggregation policy of the health package.
func HealthPolicy(p *pb.HealthCheckPolicy) health.Policy { return policy.Health(p) }

// msFields are the policy fields that the packages name without the unit
// suffix the proto gives them.
var msFields = map[string]bool{
	"window": true, "base_ejection": true, "max_ejection": true, "trip_decay": true,
	"probe_lease": true, "local_ejection": true, "stale_after": true,
}

// policyFieldError turns a package's *PolicyError into a refusal naming the
// proto field under prefix ("breaker.").
func policyFieldError(prefix string, err error) *pb.CommandError {
	field, reason := "", err.Error()
	var be *breaker.PolicyError
	var he *health.PolicyError
	switch {
	case errors.As(err, &be):
		field, reason = be.Field, be.Reason
	case errors.As(err, &he):
		field, reason = he.Field, he.Reason
	}
	if msFields[field] {
		field += "_ms"
	}
	return invalid(prefix+field, "%s", reason)
}

// MaxPanicThresholdPercent is the largest panic_threshold_percent: with 100
// a cell panics (routes over every endpoint) as soon as one endpoint is out.
const MaxPanicThresholdPercent = 100

// validatePolicies checks a cell's breaker and health check policies and its
// panic threshold. Fields are relative to the cell ("breaker.max_ejection_ms").
func validatePolicies(c *pb.Cell) *pb.CommandError {
	if e := validateAuth(c); e != nil {
		return e
	}
	if p := c.GetPanicThresholdPercent(); p > MaxPanicThresholdPercent {
		return invalid("panic_threshold_percent", "panic_threshold_percent %d is over %d; use 0 (off) to %d, a percentage of the cell's endpoints",
			p, MaxPanicThresholdPercent, MaxPanicThresholdPercent)
	}
	if b := c.GetBreaker(); b != nil {
		if err := BreakerPolicy(b).Validate(); err != nil {
			return policyFieldError("breaker.", err)
		}
	}
	h := c.GetHealthCheck()
	if h == nil {
		return nil
	}
	if err := HealthPolicy(h).Validate(); err != nil {
		return policyFieldError("health_check.", err)
	}
	if p := h.GetHttpPath(); p != "" && !strings.HasPrefix(p, "/") {
		return invalid("health_check.http_path", "http_path %q must start with '/', for example %q", p, policy.DefaultCheckPath)
	}
	interval, timeout := policy.HealthCheck(h).Interval, ms(h.GetTimeoutMs())
	if timeout > interval {
		return invalid("health_check.timeout_ms", "timeout_ms %d is longer than interval_ms %d; a check must end before the next one starts",
			timeout.Milliseconds(), interval.Milliseconds())
	}
	return nil
}

// Policies are compared and copied with proto.Equal and proto.Clone: unlike
// endpoints and placements they are few (at most one each per cell), so
// reflection costs nothing that matters, and it cannot miss a new field.

func clonePolicy[M interface {
	proto.Message
	comparable
}](m M) M {
	var none M
	if m == none {
		return m
	}
	return proto.Clone(m).(M)
}
