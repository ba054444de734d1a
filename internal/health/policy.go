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

// PolicyError is the error Policy.Validate returns: Field is the offending
// field's snake-case name ("stale_after"), so a caller can build a path. It
// matches ErrInvalidPolicy with errors.Is.
type PolicyError struct{ Field, Reason string }

func (e *PolicyError) Error() string {
	return fmt.Sprintf("%s: %s %s", ErrInvalidPolicy, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) true.
func (e *PolicyError) Unwrap() error { return ErrInvalidPolicy }

// Validate reports an invalid field as a *PolicyError, which wraps
// ErrInvalidPolicy. New and SetPolicy never fail: they take the default
// instead.
func (p Policy) Validate() error {
	if p.StaleAfter < 0 {
		return &PolicyError{Field: "stale_after", Reason: fmt.Sprintf("is %s; it must not be negative (0 means the default %s)", p.StaleAfter, DefaultStaleAfter)}
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
