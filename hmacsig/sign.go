package hmacsig

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signer signs outgoing requests with one API key. Sign only reads its
// fields, so one Signer may sign requests concurrently when its Now and Nonce
// may be called concurrently (the defaults may).
type Signer struct {
	// KeyID is sent as X-Key-Id.
	KeyID string
	// Secret is the key's secret: the HMAC key, used as these bytes.
	Secret []byte
	// Now gives the X-Timestamp; nil means time.Now.
	Now func() time.Time
	// Nonce gives the X-Nonce, which must be new for every request; nil
	// means NewNonce.
	Nonce func() string
}

// Sign sets X-Key-Id, X-Timestamp, X-Nonce and X-Signature on req, replacing
// any values they had. It signs what net/http will send: the method ("GET"
// when empty), req.URL.RequestURI(), the X-Routing-Key header and the body.
// It reads the body and puts an equivalent one back (with GetBody and
// ContentLength set), so req can still be sent, and resent after a
// redirect or a retry; a GET without a body signs the SHA-256 of the empty
// string. Change nothing signed between Sign and sending.
//
// Sign fails, with req's headers untouched, when the Signer is incomplete,
// the routing key or nonce is unusable, or the body cannot be read (the body
// is then consumed).
func (s *Signer) Sign(req *http.Request) error {
	if s.KeyID == "" {
		return errors.New("hmacsig: Signer.KeyID is empty")
	}
	if !validFieldValue(s.KeyID) {
		return fmt.Errorf("hmacsig: Signer.KeyID %q: not a valid header value", s.KeyID)
	}
	if len(s.Secret) == 0 {
		return errors.New("hmacsig: Signer.Secret is empty")
	}
	routingKey, err := signedRoutingKey(req.Header)
	if err != nil {
		return err
	}
	nonce := NewNonce
	if s.Nonce != nil {
		nonce = s.Nonce
	}
	n := nonce()
	if !ValidNonce([]byte(n)) {
		return fmt.Errorf("hmacsig: Signer.Nonce: %w", badNonce([]byte(n)))
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)

	body, err := bufferBody(req)
	if err != nil {
		return err
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	target, changed, err := NormalizeTarget(nil, []byte(req.URL.RequestURI()))
	if err != nil {
		return fmt.Errorf("hmacsig: request target %q: %w (an edge refuses it)", req.URL.RequestURI(), err)
	}
	if !changed {
		target = []byte(req.URL.RequestURI())
	}
	canon := AppendCanonical(nil, []byte(method), target, []byte(routingKey),
		[]byte(ts), []byte(n), sha256.Sum256(body))
	sig := Signature(s.Secret, canon)

	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Header.Set(HeaderKeyID, s.KeyID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, n)
	req.Header.Set(HeaderSignature, sig)
	return nil
}

// signedRoutingKey is the X-Routing-Key value as net/http will send it and
// an edge will read it: trimmed of spaces and tabs.
func signedRoutingKey(h http.Header) (string, error) {
	vs := h.Values(HeaderRoutingKey)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", fmt.Errorf("hmacsig: %s: %d values; a signed request carries one", HeaderRoutingKey, len(vs))
	case !validFieldValue(vs[0]):
		return "", fmt.Errorf("hmacsig: %s %q: not a valid header value", HeaderRoutingKey, vs[0])
	}
	return strings.Trim(vs[0], " \t"), nil
}

// validFieldValue reports whether v can be sent as a header value: no
// control character but tab (RFC 9110, 5.5), so that no newline can enter the
// canonical string.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// bufferBody reads req's body and replaces it with an equivalent one that
// can be read again.
func bufferBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("hmacsig: read the request body: %w", err)
	}
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body, req.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		return nil, nil
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Body, _ = req.GetBody()
	return body, nil
}

// NewNonce returns 22 URL-safe base64 characters of 128 random bits: a valid
// X-Nonce that no other request will carry.
func NewNonce() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Signature returns the X-Signature of a canonical string (see
// AppendCanonical): the lowercase hex HMAC-SHA256 of canonical keyed with
// secret.
func Signature(secret, canonical []byte) string {
	m := newMAC()
	return hex.EncodeToString(m.sum(secret, canonical)[:])
}
