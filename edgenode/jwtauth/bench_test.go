package jwtauth

import (
	"context"
	"testing"
	"time"
)

// BenchmarkVerifyES256 measures the request path: an ES256 token verified
// against a cached key.
func BenchmarkVerifyES256(b *testing.B) {
	k := p256Key(b, "ec-1")
	is := newIssuer(b, k)
	v := New(Config{})
	defer v.Close()
	p := Policy{Issuer: testIssuer, Audience: testAudience, JWKSURL: is.url()}
	token := k.sign(b, claimsAt(time.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, p, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, p, token); err != nil {
			b.Fatal(err)
		}
	}
}
