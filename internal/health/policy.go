package health

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Policy, those of Envoy's active health checking.
const (
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
	DefaultStaleAfter         = 30 * time.Second
)

// ErrInvalidPolicy is returned (wrapped, naming the field) by Policy.Validate.
var ErrInvalidPolicy = errors.New("invalid health policy")

// Policy configures the aggregation of one endpoint's checks. A zero field
// means its default.
type Policy struct {
	// HealthyThreshold consecutive passes make an edge see the endpoint healthy.
	HealthyThreshold uint32
	// UnhealthyThreshold consecutive failures make it see it unhealthy.
	UnhealthyThreshold uint32
	// StaleAfter: an edge that has not reported for this long no longer
	// counts. Set it to a few check intervals plus the report batching delay.
	StaleAfter time.Duration
}

// Validate reports an invalid field, wrapped in ErrInvalidPolicy. New and
// SetPolicy never fail: they take the default instead.
func (p Policy) Validate() error {
	if p.StaleAfter < 0 {
		return fmt.Errorf("%w: stale_after is %s; it must not be negative (0 means the default %s)",
			ErrInvalidPolicy, p.StaleAfter, DefaultStaleAfter)
	}
	return nil
}

func (p Policy) withDefaults() Policy {
	if p.HealthyThreshold == 0 {
		p.HealthyThreshold = DefaultHealthyThreshold
	}
	if p.UnhealthyThreshold == 0 {
		p.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	if p.StaleAfter <= 0 {
		p.StaleAfter = DefaultStaleAfter
	}
	return p
}
