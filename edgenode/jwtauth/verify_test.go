package jwtauth

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestValidTokenOfEachAlgorithmVerifies(t *testing.T) {
	keys := []testKey{rsaKey(t, "rsa-1"), p256Key(t, "ec-1"), ed25519Key(t, "ed-1")}
	e := newEnv(t, Config{}, keys...)
	for _, k := range keys {
		t.Run(k.method.Alg(), func(t *testing.T) {
			want := claimsAt(e.clock.Now())
			c := e.mustVerify(t, k.sign(t, want))
			if c.Subject != "user-1" || c.Issuer != testIssuer || len(c.Audience) != 1 || c.Audience[0] != testAudience ||
				!c.ExpiresAt.Equal(want.ExpiresAt.Time) || !c.IssuedAt.Equal(want.IssuedAt.Time) {
				t.Fatalf("claims %+v, want those of %+v", c, want)
			}
		})
	}
	t.Run("no kid: tried against every key", func(t *testing.T) {
		k := p256Key(t, "")
		e.mustVerify(t, k.sign(t, claimsAt(e.clock.Now())))
	})
	e.wantFetches(t, 1)
}

func TestTokenClaimsAreChecked(t *testing.T) {
	k := p256Key(t, "ec-1")
	e := newEnv(t, Config{Leeway: 30 * time.Second}, k)
	now := e.clock.Now()
	at := jwt.NewNumericDate
	for _, tc := range []struct {
		name   string
		modify func(c *jwt.RegisteredClaims)
		want   error // nil: verifies
	}{
		{"expired", func(c *jwt.RegisteredClaims) { c.ExpiresAt = at(now.Add(-time.Minute)) }, ErrExpired},
		{"expired within leeway", func(c *jwt.RegisteredClaims) { c.ExpiresAt = at(now.Add(-10 * time.Second)) }, nil},
		{"no exp", func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }, ErrInvalidToken},
		{"not yet valid", func(c *jwt.RegisteredClaims) { c.NotBefore = at(now.Add(time.Minute)) }, ErrInvalidToken},
		{"nbf within leeway", func(c *jwt.RegisteredClaims) { c.NotBefore = at(now.Add(10 * time.Second)) }, nil},
		{"issued in the future", func(c *jwt.RegisteredClaims) { c.IssuedAt = at(now.Add(time.Minute)) }, ErrInvalidToken},
		{"wrong audience", func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"cell-b"} }, ErrWrongAudience},
		{"no audience", func(c *jwt.RegisteredClaims) { c.Audience = nil }, ErrInvalidToken},
		{"audience among others", func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"cell-b", testAudience} }, nil},
		{"wrong issuer", func(c *jwt.RegisteredClaims) { c.Issuer = "https://evil.test" }, ErrWrongIssuer},
		{"no issuer", func(c *jwt.RegisteredClaims) { c.Issuer = "" }, ErrInvalidToken},
		{"expired and wrong audience: audience wins", func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = at(now.Add(-time.Hour))
			c.Audience = jwt.ClaimStrings{"cell-b"}
		}, ErrWrongAudience},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claimsAt(now)
			tc.modify(&c)
			_, err := e.verify(k.sign(t, c))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			wantErr(t, err, tc.want)
		})
	}
	e.wantFetches(t, 1)
}

func TestOnlyRS256ES256AndEdDSAAreAccepted(t *testing.T) {
	rsa, ec, ec384 := rsaKey(t, "rsa-1"), p256Key(t, "ec-1"), p384Key(t, "ec384-1")
	e := newEnv(t, Config{}, rsa, ec, ec384)
	claims := claimsAt(e.clock.Now())
	e.mustVerify(t, ec.sign(t, claims)) // first fetch

	pubDER, err := x509.MarshalPKIXPublicKey(rsaPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	for _, tc := range []struct{ name, token string }{
		{"none", signWith(t, jwt.SigningMethodNone, rsa.kid, jwt.UnsafeAllowNoneSignatureType, claims)},
		{"HS256 keyed with the RSA public key", signWith(t, jwt.SigningMethodHS256, rsa.kid, rsaPubPEM, claims)},
		{"HS256 without kid", signWith(t, jwt.SigningMethodHS256, "", []byte("secret"), claims)},
		{"PS256 with a published RSA key", signWith(t, jwt.SigningMethodPS256, rsa.kid, rsaPriv, claims)},
		{"RS512 with a published RSA key", signWith(t, jwt.SigningMethodRS512, rsa.kid, rsaPriv, claims)},
		{"ES384 with a published P-384 key", ec384.sign(t, claims)},
		{"ES256 naming the RSA key", signWith(t, jwt.SigningMethodES256, rsa.kid, ecPriv, claims)},
		{"RS256 naming the EC key", signWith(t, jwt.SigningMethodRS256, ec.kid, rsaPriv, claims)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.verify(tc.token)
			wantErr(t, err, ErrInvalidToken)
		})
	}
	e.wantFetches(t, 1) // none of them made the edge refetch keys
}

func TestBadSignatureIsRejected(t *testing.T) {
	k := ed25519Key(t, "ed-1")
	e := newEnv(t, Config{}, k)
	good := k.sign(t, claimsAt(e.clock.Now()))
	e.mustVerify(t, good)

	forged := claimsAt(e.clock.Now())
	forged.Subject = "admin"
	parts := strings.Split(k.sign(t, forged), ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Split(good, ".")[2]
	_, err := e.verify(tampered)
	wantErr(t, err, ErrInvalidToken)
	if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("error %v should keep the library's reason", err)
	}

	for _, bad := range []string{"garbage", "a.b.c", strings.Repeat("x", MaxTokenBytes+1)} {
		_, err := e.verify(bad)
		wantErr(t, err, ErrInvalidToken)
	}
	_, err = e.verify("")
	wantErr(t, err, ErrMissingToken)
}

func TestKeyMarkedForEncryptionDoesNotVerify(t *testing.T) {
	k := p256Key(t, "enc-1")
	k.jwk["use"] = "enc"
	e := newEnv(t, Config{}, k)
	_, err := e.verify(k.sign(t, claimsAt(e.clock.Now())))
	wantErr(t, err, ErrInvalidToken)
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, want string
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi"},
		{"bearer   abc ", "abc"},
		{"BEARER abc", "abc"},
		{"", ""},
		{"Bearer", ""},
		{"Bearer ", ""},
		{"Basic dXNlcjpwdw==", ""},
		{"Bearerabc", ""},
	} {
		got, err := BearerToken(tc.header)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrMissingToken) {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", tc.header, got, err, tc.want)
		}
	}
}
