package health

import (
	"errors"
	"fmt"
	"strings"

	"github.com/edgecell/edgecell/internal/statecodec"
)

// ErrCorrupt is returned (wrapped) by UnmarshalBinary for data that
// MarshalBinary did not produce.
var ErrCorrupt = errors.New("corrupt health encoding")

// encodingVersion is bumped on any incompatible change of fields, which
// statecodec stores under encodingKey.
const (
	encodingVersion = 1
	encodingKey     = "H"
)

// MarshalBinary encodes the complete state, for raft snapshots: a State
// decoded from it continues exactly as the original. The format is versioned
// JSON, opaque to callers.
func (s State) MarshalBinary() ([]byte, error) {
	return statecodec.Marshal(encodingVersion, encodingKey, s.s)
}

// UnmarshalBinary replaces s with the state data encodes.
func (s *State) UnmarshalBinary(data []byte) error {
	var h fields
	if err := statecodec.Unmarshal(data, encodingVersion, encodingKey, &h); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	switch {
	case h.Policy != h.Policy.WithDefaults():
		return fmt.Errorf("%w: policy %+v has unset fields", ErrCorrupt, h.Policy)
	case h.Verdict > Unhealthy:
		return fmt.Errorf("%w: verdict %d", ErrCorrupt, h.Verdict)
	}
	for i, x := range h.Edges {
		if x.ID == "" || x.Verdict > Unhealthy || i > 0 && strings.Compare(h.Edges[i-1].ID, x.ID) >= 0 {
			return fmt.Errorf("%w: edge %d (%q) is invalid or out of order", ErrCorrupt, i, x.ID)
		}
	}
	s.s = h
	return nil
}
