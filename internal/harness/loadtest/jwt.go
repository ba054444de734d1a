package loadtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer names and lifetimes of the tokens the dev issuer mints.
const (
	DevJWTIssuer   = "https://loadtest.edgecell.invalid"
	DevJWTAudience = "edgecell-loadtest"
	jwtLifetime    = 5 * time.Minute
	// jwtReuse is how long one token is sent before another is minted:
	// edges verify every request anyway, and minting costs about 40 µs of
	// CPU (BenchmarkIssuerMint), most of a core at 20,000 requests a second.
	jwtReuse  = time.Minute
	devJWTKid = "loadtest-1"
)

// Issuer is an in-process token issuer for dev clusters: an HTTP server
// publishing the JWKS of an ES256 key it generated, and a minter of tokens
// signed by that key. Close stops the server.
type Issuer struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey

	mu     sync.Mutex
	token  string
	minted time.Time
}

// NewIssuer generates a P-256 key and starts serving its JWKS.
func NewIssuer() (*Issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("jwt issuer: %w", err)
	}
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return nil, fmt.Errorf("jwt issuer: %w", err)
	}
	xy := pub.Bytes()[1:] // uncompressed point: 0x04 || X || Y
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": devJWTKid,
		"x": b64(xy[:32]), "y": b64(xy[32:]),
	}}})
	if err != nil {
		return nil, err
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	return &Issuer{srv: srv, key: key}, nil
}

// JWKSURL is where the issuer publishes its key.
func (i *Issuer) JWKSURL() string { return i.srv.URL + "/.well-known/jwks.json" }

// Token is a token for DevJWTAudience valid for five minutes, minted again
// once the current one is a minute old.
func (i *Issuer) Token() (string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	now := time.Now()
	if i.token != "" && now.Sub(i.minted) < jwtReuse {
		return i.token, nil
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer: DevJWTIssuer, Subject: "loadtest", Audience: jwt.ClaimStrings{DevJWTAudience},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(jwtLifetime)),
	})
	t.Header["kid"] = devJWTKid
	s, err := t.SignedString(i.key)
	if err != nil {
		return "", fmt.Errorf("jwt issuer: sign: %w", err)
	}
	i.token, i.minted = s, now
	return s, nil
}

// Close stops serving the JWKS.
func (i *Issuer) Close() { i.srv.Close() }
