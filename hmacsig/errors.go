package hmacsig

import "errors"

// The causes of a refused signature. Every error this package returns about
// a request wraps one of them (test with errors.Is) and its message names the
// offending header, e.g. `X-Timestamp: timestamp outside the window: 412s
// behind the verifier's clock (window 5m0s)`.
var (
	// ErrMissingHeader: a signing header is absent or empty.
	ErrMissingHeader = errors.New("missing header")
	// ErrBadTimestamp: X-Timestamp is not unix seconds in decimal.
	ErrBadTimestamp = errors.New("malformed timestamp")
	// ErrStaleTimestamp: X-Timestamp is further from the verifier's clock
	// than the window allows, in the past or in the future.
	ErrStaleTimestamp = errors.New("timestamp outside the window")
	// ErrBadNonce: X-Nonce is empty, longer than MaxNonceLen or has a
	// character outside A-Z a-z 0-9 . _ -.
	ErrBadNonce = errors.New("malformed nonce")
	// ErrBadSignature: X-Signature is not 64 lowercase hex digits or does
	// not match the request.
	ErrBadSignature = errors.New("bad signature")
)
