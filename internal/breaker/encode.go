package breaker

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrCorrupt is returned (wrapped) by UnmarshalBinary for data that
// MarshalBinary did not produce.
var ErrCorrupt = errors.New("corrupt breaker encoding")

// encodingVersion is bumped on any incompatible change of fields.
const encodingVersion = 1

type encoded struct {
	V int
	B fields
}

// MarshalBinary encodes the complete state (counters, window, policy), for
// raft snapshots: a breaker decoded from it equals the original (==) and
// continues identically. The format is versioned JSON, opaque to callers.
func (b Breaker) MarshalBinary() ([]byte, error) {
	return json.Marshal(encoded{V: encodingVersion, B: b.s})
}

// UnmarshalBinary replaces b with the breaker data encodes.
func (b *Breaker) UnmarshalBinary(data []byte) error {
	var e encoded
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if e.V != encodingVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrCorrupt, e.V, encodingVersion)
	}
	if e.B.State > HalfOpen {
		return fmt.Errorf("%w: state %d", ErrCorrupt, e.B.State)
	}
	// Encoded before the field existed: it reads as its default, as a cell
	// policy without max_ejection_percent does, so the version stays.
	if e.B.Policy.MaxEjectionPercent == 0 {
		e.B.Policy.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	if e.B.Policy != e.B.Policy.withDefaults() {
		return fmt.Errorf("%w: policy %+v has unset fields", ErrCorrupt, e.B.Policy)
	}
	b.s = e.B
	return nil
}
