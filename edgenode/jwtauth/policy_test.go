package jwtauth

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyValidateNamesTheBadField(t *testing.T) {
	ok := Policy{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://issuer.test/jwks.json"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid policy: %v", err)
	}
	for _, tc := range []struct {
		name   string
		modify func(p *Policy)
		field  string
	}{
		{"no issuer", func(p *Policy) { p.Issuer = "" }, "issuer"},
		{"no audience", func(p *Policy) { p.Audience = "" }, "audience"},
		{"no JWKS URL", func(p *Policy) { p.JWKSURL = "" }, "jwks_url"},
		{"relative URL", func(p *Policy) { p.JWKSURL = "/jwks.json" }, "jwks_url"},
		{"no host", func(p *Policy) { p.JWKSURL = "https:///jwks.json" }, "jwks_url"},
		{"other scheme", func(p *Policy) { p.JWKSURL = "ftp://issuer.test/jwks.json" }, "jwks_url"},
		{"unparsable", func(p *Policy) { p.JWKSURL = "https://issuer.test/%zz" }, "jwks_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.modify(&p)
			err := p.Validate()
			if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want ErrInvalidPolicy naming %s", err, tc.field)
			}
		})
	}
}

func TestVerifyRefusesAnInvalidPolicyWithoutFetching(t *testing.T) {
	k := p256Key(t, "ec-1")
	e := newEnv(t, Config{}, k)
	token := k.sign(t, claimsAt(e.clock.Now()))
	for _, p := range []Policy{
		{Audience: testAudience, JWKSURL: e.is.url()},
		{Issuer: testIssuer, JWKSURL: e.is.url()},
		{Issuer: testIssuer, Audience: testAudience, JWKSURL: "issuer.test/jwks"},
	} {
		_, err := e.v.Verify(t.Context(), p, token)
		wantErr(t, err, ErrInvalidPolicy)
	}
	e.wantFetches(t, 0)
}
