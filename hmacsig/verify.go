package hmacsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"time"
)

// Request is what a verifier knows of a signed request: the bytes it parsed
// from the request line and headers, and the SHA-256 of the body (for
// example sha256.Sum256(body), or a hash the body was streamed through).
// Absent headers are nil or empty.
type Request struct {
	Method     []byte // as on the request line
	Target     []byte // origin form: path and raw query as on the request line
	RoutingKey []byte // X-Routing-Key without surrounding spaces and tabs
	KeyID      []byte // X-Key-Id
	Timestamp  []byte // X-Timestamp
	Nonce      []byte // X-Nonce
	Signature  []byte // X-Signature
	BodySHA256 [32]byte
}

// CheckHeaders reports ErrMissingHeader, naming the header, for the first of
// X-Key-Id, X-Timestamp, X-Nonce and X-Signature that is absent or empty. An
// edge calls it before looking up the key named by KeyID.
func (r *Request) CheckHeaders() error {
	for _, h := range [...]struct {
		name  string
		value []byte
	}{
		{HeaderKeyID, r.KeyID},
		{HeaderTimestamp, r.Timestamp},
		{HeaderNonce, r.Nonce},
		{HeaderSignature, r.Signature},
	} {
		if len(h.value) == 0 {
			return fmt.Errorf("%s: %w", h.name, ErrMissingHeader)
		}
	}
	return nil
}

// A Verifier checks signatures with reused buffers, so that verifying a
// request allocates nothing. It is not safe for concurrent use: keep one per
// connection or per goroutine. The zero value is not usable; call
// NewVerifier.
type Verifier struct {
	mac   mac
	canon []byte
	want  [SignatureLen]byte
}

// NewVerifier returns a Verifier.
func NewVerifier() *Verifier {
	return &Verifier{mac: newMAC(), canon: make([]byte, 0, 512)}
}

// Check verifies r, signed with secret (the secret of the key r.KeyID names),
// at time now with the given window (zero or less: DefaultWindow): headers
// present, timestamp well formed and within the window, nonce well formed,
// signature matching. The error wraps ErrMissingHeader, ErrBadTimestamp,
// ErrStaleTimestamp, ErrBadNonce or ErrBadSignature and names the header.
// Check does not know whether the nonce was used before: that is the
// caller's last check, after Check succeeds. It allocates only when it
// fails.
func (v *Verifier) Check(r *Request, secret []byte, now time.Time, window time.Duration) error {
	if err := r.CheckHeaders(); err != nil {
		return err
	}
	ts, err := ParseTimestamp(r.Timestamp)
	if err != nil {
		return err
	}
	if err := CheckTimestamp(ts, now, window); err != nil {
		return err
	}
	if !ValidNonce(r.Nonce) {
		return badNonce(r.Nonce)
	}
	if len(r.Signature) != SignatureLen {
		return fmt.Errorf("%s: %w: want %d lowercase hex digits, got %d characters", HeaderSignature, ErrBadSignature, SignatureLen, len(r.Signature))
	}
	v.canon = AppendCanonical(v.canon[:0], r.Method, r.Target, r.RoutingKey, r.Timestamp, r.Nonce, r.BodySHA256)
	if !v.Verify(secret, v.canon, r.Signature) {
		return fmt.Errorf("%s: %w: does not match the request", HeaderSignature, ErrBadSignature)
	}
	return nil
}

// Verify reports whether signatureHex is the lowercase hex HMAC-SHA256 of
// canonical keyed with secret. The comparison takes the same time wherever
// the first difference is, so a client learns nothing from how long a
// refusal took.
func (v *Verifier) Verify(secret, canonical, signatureHex []byte) bool {
	sum := v.mac.sum(secret, canonical)
	hex.Encode(v.want[:], sum[:])
	return hmac.Equal(v.want[:], signatureHex)
}

// Verify is Verifier.Verify with a Verifier of its own: convenient, safe for
// concurrent use, and allocating.
func Verify(secret, canonical, signatureHex []byte) bool {
	return NewVerifier().Verify(secret, canonical, signatureHex)
}

// mac computes HMAC-SHA256 (RFC 2104) with one reused SHA-256 state. The key
// changes with every request, and crypto/hmac.New allocates two hashes and
// two pads per key, so the verifier's hot path does the construction itself;
// the tests check it against crypto/hmac.
type mac struct {
	h   hash.Hash
	pad [sha256.BlockSize]byte
	key [sha256.Size]byte // the hash of a key longer than a block
	out [sha256.Size]byte
}

func newMAC() mac { return mac{h: sha256.New()} }

// sum returns HMAC-SHA256(secret, msg) in m's own buffer: valid until the
// next call.
func (m *mac) sum(secret, msg []byte) *[sha256.Size]byte {
	const ipad, opad = 0x36, 0x5c
	key := secret
	if len(key) > sha256.BlockSize {
		m.h.Reset()
		m.h.Write(key)
		key = m.h.Sum(m.key[:0])
	}
	for i := range m.pad {
		m.pad[i] = ipad
	}
	for i, b := range key {
		m.pad[i] ^= b
	}
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(msg)
	inner := m.h.Sum(m.out[:0])
	for i := range m.pad {
		m.pad[i] ^= ipad ^ opad
	}
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(inner)
	m.h.Sum(m.out[:0])
	clear(m.pad[:]) // no key material left behind between requests
	clear(m.key[:])
	return &m.out
}

// FromHTTP is the Request of r, a request a net/http server received, with
// its body: for verifiers built on net/http rather than on the edge's proxy.
// The target is r.RequestURI, the request-target as the client sent it.
func FromHTTP(r *http.Request, body []byte) *Request {
	target := []byte(r.RequestURI)
	if t, changed, err := NormalizeTarget(nil, target); err == nil && changed {
		target = t
	}
	return &Request{
		Method:     []byte(r.Method),
		Target:     target,
		RoutingKey: []byte(r.Header.Get(HeaderRoutingKey)),
		KeyID:      []byte(r.Header.Get(HeaderKeyID)),
		Timestamp:  []byte(r.Header.Get(HeaderTimestamp)),
		Nonce:      []byte(r.Header.Get(HeaderNonce)),
		Signature:  []byte(r.Header.Get(HeaderSignature)),
		BodySHA256: sha256.Sum256(body),
	}
}
