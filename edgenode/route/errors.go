package route

import "errors"

// Sentinel errors returned (wrapped, with the offending names) by Builder,
// Build and Table.Apply. A change that fails with any of them must be rejected
// as a whole: the table it was applied to is unchanged.
var (
	// ErrUnknownCell: a placement or the default cell names a cell that does
	// not exist once the change is applied.
	ErrUnknownCell = errors.New("unknown cell")
	// ErrInvalidEndpoint: an endpoint has no id or an unusable URL (not an
	// absolute http or https URL with a host).
	ErrInvalidEndpoint = errors.New("invalid endpoint")
	// ErrInvalidEvent: an event carries no known kind or an empty name.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrStaleRevision: a change does not come after the table's revision.
	ErrStaleRevision = errors.New("revision not newer than the table's")
)
