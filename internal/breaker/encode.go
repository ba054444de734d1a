package breaker

import (
	"errors"
	"fmt"

	"github.com/edgecell/edgecell/internal/policy"

	"github.com/edgecell/edgecell/internal/statecodec"
)

// ErrCorrupt is returned (wrapped) by UnmarshalBinary for data that
// MarshalBinary did not produce.
var ErrCorrupt = errors.New("corrupt breaker encoding")

// encodingVersion is bumped on any incompatible change of fields, which
// statecodec stores under encodingKey.
const (
	encodingVersion = 1
	encodingKey     = "B"
)

// MarshalBinary encodes the complete state (counters, window, policy), for
// raft snapshots: a breaker decoded from it equals the original (==) and
// continues identically. The format is versioned JSON, opaque to callers.
func (b Breaker) MarshalBinary() ([]byte, error) {
	return statecodec.Marshal(encodingVersion, encodingKey, b.s)
}

// UnmarshalBinary replaces b with the breaker data encodes.
func (b *Breaker) UnmarshalBinary(data []byte) error {
	var f fields
	if err := statecodec.Unmarshal(data, encodingVersion, encodingKey, &f); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if f.State > HalfOpen {
		return fmt.Errorf("%w: state %d", ErrCorrupt, f.State)
	}
	// Encoded before the field existed: it reads as its default, as a cell
	// policy without max_ejection_percent does, so the version stays.
	if f.Policy.MaxEjectionPercent == 0 {
		f.Policy.MaxEjectionPercent = policy.DefaultMaxEjectionPercent
	}
	if f.Policy != f.Policy.WithDefaults() {
		return fmt.Errorf("%w: policy %+v has unset fields", ErrCorrupt, f.Policy)
	}
	b.s = f
	return nil
}
