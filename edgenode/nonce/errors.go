package nonce

import "errors"

var (
	// ErrUnavailable: no coordinator answered the check within the client's
	// Timeout (none reachable, or none with a quorum). The nonce may or may
	// not have been stored; the request must be refused (503), and the
	// client may send it again.
	ErrUnavailable = errors.New("nonce check unavailable: no coordinator answered")
	// ErrClosed: Check was called after Close, or Close interrupted it.
	ErrClosed = errors.New("nonce client closed")
	// ErrNoCoordinator: no coordinator address is known yet.
	ErrNoCoordinator = errors.New("no coordinator address known")
)
