package edgenode

import "errors"

// ErrInvalidConfig is the cause of every Start error about a missing or
// unusable Config field; the message names the field.
var ErrInvalidConfig = errors.New("invalid edge config")
