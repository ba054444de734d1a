package hmacsig

import (
	"encoding/hex"
	"fmt"
	"math"
	"time"
)

// The headers of a signed request.
const (
	HeaderKeyID      = "X-Key-Id"
	HeaderTimestamp  = "X-Timestamp"
	HeaderNonce      = "X-Nonce"
	HeaderSignature  = "X-Signature"
	HeaderRoutingKey = "X-Routing-Key" // signed when present, not required
)

const (
	// DefaultWindow is how far X-Timestamp may be from the verifier's clock,
	// either way, unless the verifier configures another window.
	DefaultWindow = 300 * time.Second
	// MaxNonceLen is the longest X-Nonce accepted, in bytes.
	MaxNonceLen = 128
	// SignatureLen is the length of X-Signature: SHA-256's 32 bytes in hex.
	SignatureLen = 64
)

// AppendCanonical appends the canonical string of a request to dst and
// returns the extended buffer: method, target (path and raw query as on the
// request line), routing key (the X-Routing-Key value, trimmed, or empty),
// timestamp and nonce (the header values as received) and the hex SHA-256
// of the body, joined by "\n". It does not validate its inputs; check the
// timestamp and nonce first (Verifier.Check does). It allocates only when
// dst is too small.
func AppendCanonical(dst []byte, method, target, routingKey, timestamp, nonce []byte, bodySHA256 [32]byte) []byte {
	dst = append(dst, method...)
	dst = append(dst, '\n')
	dst = append(dst, target...)
	dst = append(dst, '\n')
	dst = append(dst, routingKey...)
	dst = append(dst, '\n')
	dst = append(dst, timestamp...)
	dst = append(dst, '\n')
	dst = append(dst, nonce...)
	dst = append(dst, '\n')
	return hex.AppendEncode(dst, bodySHA256[:])
}

// ParseTimestamp parses an X-Timestamp value: unix seconds as 1 to 19
// decimal digits, with no sign and no leading zero. An empty value is
// ErrMissingHeader, any other bad one ErrBadTimestamp. It does not allocate
// unless it fails.
func ParseTimestamp(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%s: %w", HeaderTimestamp, ErrMissingHeader)
	}
	if len(b) > 1 && b[0] == '0' {
		return 0, badTimestamp(b, "leading zero")
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, badTimestamp(b, "want unix seconds as decimal digits")
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, badTimestamp(b, "out of range")
		}
		n = n*10 + d
	}
	return n, nil
}

func badTimestamp(b []byte, why string) error {
	return fmt.Errorf("%s: %w: %s, got %q", HeaderTimestamp, ErrBadTimestamp, why, clip(b))
}

// CheckTimestamp reports whether ts (unix seconds) is within window of now,
// in the past or in the future, bounds included; now is taken in whole
// seconds. A window of zero or less means DefaultWindow. The error wraps
// ErrStaleTimestamp and says how far off ts is.
func CheckTimestamp(ts int64, now time.Time, window time.Duration) error {
	if window <= 0 {
		window = DefaultWindow
	}
	w := int64(window / time.Second)
	nowSec := now.Unix()
	switch {
	case ts < nowSec-w:
		return fmt.Errorf("%s: %w: %ds behind the verifier's clock (window %s)", HeaderTimestamp, ErrStaleTimestamp, nowSec-ts, window)
	case ts > nowSec+w:
		return fmt.Errorf("%s: %w: %ds ahead of the verifier's clock (window %s)", HeaderTimestamp, ErrStaleTimestamp, ts-nowSec, window)
	}
	return nil
}

// ValidNonce reports whether b is a well-formed X-Nonce: 1 to MaxNonceLen
// characters of A-Z a-z 0-9 . _ -.
func ValidNonce(b []byte) bool {
	if len(b) == 0 || len(b) > MaxNonceLen {
		return false
	}
	for _, c := range b {
		if !nonceByte(c) {
			return false
		}
	}
	return true
}

func nonceByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

func badNonce(b []byte) error {
	why := "want 1 to 128 characters of A-Z a-z 0-9 . _ -"
	if len(b) > MaxNonceLen {
		why = fmt.Sprintf("%d characters, at most %d allowed", len(b), MaxNonceLen)
	}
	return fmt.Errorf("%s: %w: %s, got %q", HeaderNonce, ErrBadNonce, why, clip(b))
}

// clip shortens a header value quoted in an error: it came from the client.
func clip(b []byte) []byte {
	const max = 40
	if len(b) > max {
		return append(b[:max:max], "..."...)
	}
	return b
}
