package policy

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched with errors.Is by every *Error.
var ErrInvalid = errors.New("invalid policy")

// Error is the error every validation of this package returns. Field is the
// offending field's path in proto names, relative to what was validated
// ("window_ms" for a breaker policy, "breaker.window_ms" for a cell), so
// that a caller prefixes it and the operator reads the field they wrote.
// Reason says what is wrong and what would do, without the path.
type Error struct{ Field, Reason string }

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %s", ErrInvalid, e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) *Error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// under puts e's field under prefix ("breaker."); nil stays nil.
func under(prefix string, e *Error) *Error {
	if e == nil {
		return nil
	}
	return &Error{Field: prefix + e.Field, Reason: e.Reason}
}

// orNil returns e as an error, nil when e is nil (not a typed nil).
func orNil(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}
