package hmacsig

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vector is one signed request with its signature hard-coded: a change to
// the canonical string breaks these tests, as it would break every client.
type vector struct {
	name      string
	secret    string
	method    string
	url       string
	target    string // what the edge sees on the request line
	keyHeader string // X-Routing-Key as set on the request ("" = absent)
	key       string // ... as signed
	ts        int64
	nonce     string
	body      string
	want      string
}

var vectors = []vector{
	{
		name:   "doc example",
		secret: "example-secret-do-not-use", method: "POST",
		url: "http://edge.example/v1/orders?region=eu-west&id=42", target: "/v1/orders?region=eu-west&id=42",
		keyHeader: "tenant-1", key: "tenant-1",
		ts: 1700000000, nonce: "Xq3v9bZ0-dTjA_7w2LkQ1e", body: `{"item":"book","qty":1}`,
		want: "7899e341ce95d7bae22b4fd666c7d4a7e1095a3a9aa01c100c713f5919994bb7",
	},
	{
		name:   "GET without body or routing key",
		secret: "example-secret-do-not-use", method: "GET",
		url: "http://edge.example/v1/orders", target: "/v1/orders",
		ts: 1700000000, nonce: "n1",
		want: "0987962c09e098f6202b31e749448308eaad6f0978e97a149b8f15bce1a1e41e",
	},
	{
		name:   "escaped path and query kept as sent, secret longer than a block, binary body",
		secret: strings.Repeat("s", 100), method: "PUT",
		url: "http://edge.example/a%20b/c%2Fd?q=%E2%9C%93&x=1&x=2#fragment", target: "/a%20b/c%2Fd?q=%E2%9C%93&x=1&x=2",
		keyHeader: "acme", key: "acme",
		ts: 1234567890, nonce: "A.z_0-9", body: "\x00\xff\n",
		want: "b03beee27e0418c5ff823b1d306a0b72650c793bcef29102982a7b76748a6d60",
	},
	{
		name:   "empty path is /, routing key trimmed, longest nonce",
		secret: "k", method: "DELETE",
		url: "http://edge.example", target: "/",
		keyHeader: " tenant 2\t", key: "tenant 2",
		ts: 9999999999, nonce: strings.Repeat("N", MaxNonceLen),
		want: "0263c4b927b59f67f43160b1b1129e02ecd6882c7746a5e4436600883cfadb28",
	},
}

// independent computes the vector's signature from the specification with
// crypto/hmac, sharing no code with the package.
func (v vector) independent() string {
	body := sha256.Sum256([]byte(v.body))
	canonical := strings.Join([]string{v.method, v.target, v.key, strconv.FormatInt(v.ts, 10), v.nonce, hex.EncodeToString(body[:])}, "\n")
	m := hmac.New(sha256.New, []byte(v.secret))
	m.Write([]byte(canonical))
	return hex.EncodeToString(m.Sum(nil))
}

func (v vector) request(t *testing.T) *http.Request {
	t.Helper()
	var body io.Reader
	if v.body != "" {
		body = strings.NewReader(v.body)
	}
	req := newRequest(t, v.method, v.url, body)
	if v.keyHeader != "" {
		req.Header.Set(HeaderRoutingKey, v.keyHeader)
	}
	return req
}

// verifierRequest is what an edge parses from the vector's request.
func (v vector) verifierRequest(sig string) *Request {
	return &Request{
		Method: []byte(v.method), Target: []byte(v.target), RoutingKey: []byte(v.key),
		KeyID: []byte("k1"), Timestamp: []byte(strconv.FormatInt(v.ts, 10)), Nonce: []byte(v.nonce), Signature: []byte(sig),
		BodySHA256: sha256.Sum256([]byte(v.body)),
	}
}

func TestSignatureVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			if got := v.independent(); got != v.want {
				t.Fatalf("crypto/hmac over the specified canonical string = %s, hard-coded %s", got, v.want)
			}

			req := v.request(t)
			s := &Signer{KeyID: "k1", Secret: []byte(v.secret),
				Now:   func() time.Time { return time.Unix(v.ts, 999e6) },
				Nonce: func() string { return v.nonce }}
			if err := s.Sign(req); err != nil {
				t.Fatal(err)
			}
			for h, want := range map[string]string{
				HeaderKeyID: "k1", HeaderTimestamp: strconv.FormatInt(v.ts, 10), HeaderNonce: v.nonce, HeaderSignature: v.want,
			} {
				if got := req.Header.Get(h); got != want {
					t.Errorf("Sign set %s = %q, want %q", h, got, want)
				}
			}

			canon := AppendCanonical(nil, []byte(v.method), []byte(v.target), []byte(v.key),
				[]byte(strconv.FormatInt(v.ts, 10)), []byte(v.nonce), sha256.Sum256([]byte(v.body)))
			if got := Signature([]byte(v.secret), canon); got != v.want {
				t.Errorf("Signature = %s, want %s", got, v.want)
			}
			if !Verify([]byte(v.secret), canon, []byte(v.want)) {
				t.Error("Verify refuses the vector's signature")
			}
			if err := NewVerifier().Check(v.verifierRequest(v.want), []byte(v.secret), time.Unix(v.ts, 0), 0); err != nil {
				t.Errorf("Check refuses the vector: %v", err)
			}
		})
	}
}

func TestAnySingleChangeIsRefused(t *testing.T) {
	v := vectors[0]
	secret := []byte(v.secret)
	now := time.Unix(v.ts, 0)
	upper := strings.ToUpper(v.want)
	flipped := []byte(v.want)
	flipped[SignatureLen-1] ^= 1 // last hex digit: '7' -> '6'
	tests := []struct {
		name   string
		change func(r *Request)
		secret []byte
	}{
		{"method", func(r *Request) { r.Method = []byte("PUT") }, secret},
		{"method case", func(r *Request) { r.Method = []byte("post") }, secret},
		{"path", func(r *Request) { r.Target = []byte("/v1/order?region=eu-west&id=42") }, secret},
		{"query", func(r *Request) { r.Target = []byte("/v1/orders?region=eu-west&id=43") }, secret},
		{"query order", func(r *Request) { r.Target = []byte("/v1/orders?id=42&region=eu-west") }, secret},
		{"query dropped", func(r *Request) { r.Target = []byte("/v1/orders") }, secret},
		{"routing key", func(r *Request) { r.RoutingKey = []byte("tenant-2") }, secret},
		{"routing key dropped", func(r *Request) { r.RoutingKey = nil }, secret},
		{"timestamp", func(r *Request) { r.Timestamp = []byte("1700000001") }, secret},
		{"nonce", func(r *Request) { r.Nonce = []byte("Xq3v9bZ0-dTjA_7w2LkQ1f") }, secret},
		{"body", func(r *Request) { r.BodySHA256 = sha256.Sum256([]byte(`{"item":"book","qty":2}`)) }, secret},
		{"body dropped", func(r *Request) { r.BodySHA256 = sha256.Sum256(nil) }, secret},
		{"secret", func(*Request) {}, []byte("example-secret-do-not-usE")},
		{"signature digit", func(r *Request) { r.Signature = flipped }, secret},
		{"signature uppercase", func(r *Request) { r.Signature = []byte(upper) }, secret},
		{"signature truncated", func(r *Request) { r.Signature = r.Signature[:SignatureLen-1] }, secret},
		{"signature extended", func(r *Request) { r.Signature = append(r.Signature, '0') }, secret},
	}
	ver := NewVerifier()
	if err := ver.Check(v.verifierRequest(v.want), secret, now, 0); err != nil {
		t.Fatalf("unchanged request refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := v.verifierRequest(v.want)
			tt.change(r)
			err := ver.Check(r, tt.secret, now, time.Hour)
			if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), HeaderSignature) {
				t.Fatalf("Check = %v, want ErrBadSignature naming %s", err, HeaderSignature)
			}
			canon := AppendCanonical(nil, r.Method, r.Target, r.RoutingKey, r.Timestamp, r.Nonce, r.BodySHA256)
			if Verify(tt.secret, canon, r.Signature) {
				t.Error("Verify accepts the changed request")
			}
		})
	}
}

// TestMACMatchesCryptoHMAC checks the allocation-free HMAC against
// crypto/hmac around the key-length boundaries of RFC 2104 (a key longer
// than SHA-256's 64-byte block is hashed first).
func TestMACMatchesCryptoHMAC(t *testing.T) {
	m := newMAC()
	for _, keyLen := range []int{0, 1, 32, 63, 64, 65, 200} {
		for _, msgLen := range []int{0, 1, 55, 56, 64, 1000} {
			key := bytes.Repeat([]byte{byte(keyLen + 1)}, keyLen)
			msg := bytes.Repeat([]byte{byte(msgLen + 7)}, msgLen)
			ref := hmac.New(sha256.New, key)
			ref.Write(msg)
			if got := m.sum(key, msg); !bytes.Equal(got[:], ref.Sum(nil)) {
				t.Errorf("key %d bytes, message %d bytes: %x, crypto/hmac %x", keyLen, msgLen, got[:], ref.Sum(nil))
			}
		}
	}
}
