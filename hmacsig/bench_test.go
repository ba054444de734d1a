package hmacsig

import (
	"bytes"
	"crypto/sha256"
	"strconv"
	"testing"
	"time"
)

// BenchmarkVerify1KiB is what the edge pays per signed request with a 1 KiB
// body: hash the body, build the canonical string, check timestamp and
// nonce, compute the HMAC and compare it.
func BenchmarkVerify1KiB(b *testing.B) {
	secret := []byte("benchmark-secret-32-bytes-long!!")
	body := bytes.Repeat([]byte("x"), 1024)
	now := time.Unix(1700000000, 0)
	r := &Request{
		Method: []byte("POST"), Target: []byte("/v1/orders?region=eu-west&id=42"), RoutingKey: []byte("tenant-1"),
		KeyID: []byte("k1"), Timestamp: []byte(strconv.FormatInt(now.Unix(), 10)), Nonce: []byte(NewNonce()),
	}
	canon := AppendCanonical(nil, r.Method, r.Target, r.RoutingKey, r.Timestamp, r.Nonce, sha256.Sum256(body))
	r.Signature = []byte(Signature(secret, canon))
	v := NewVerifier()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r.BodySHA256 = sha256.Sum256(body)
		if err := v.Check(r, secret, now, 0); err != nil {
			b.Fatal(err)
		}
	}
}
