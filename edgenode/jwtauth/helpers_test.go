package jwtauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "cell-a"
)

// testKey is a signing key of the test issuer and its public JWK.
type testKey struct {
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
	jwk    map[string]any
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Keys are generated once per test binary: RSA-2048 generation is slow.
var (
	keysOnce sync.Once
	rsaPriv  *rsa.PrivateKey
	ecPriv   *ecdsa.PrivateKey
	p384Priv *ecdsa.PrivateKey
	edPriv   ed25519.PrivateKey
)

func genKeys(tb testing.TB) {
	tb.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecPriv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if p384Priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edPriv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

// rsaKey publishes the RSA key without "alg", so that only Verify's own
// algorithm list stands between it and PS256 or RS512 tokens.
func rsaKey(tb testing.TB, kid string) testKey {
	genKeys(tb)
	pub := rsaPriv.Public().(*rsa.PublicKey)
	return testKey{kid: kid, method: jwt.SigningMethodRS256, priv: rsaPriv, jwk: map[string]any{
		"kty": "RSA", "kid": kid, "use": "sig",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}
}

func ecKey(tb testing.TB, kid string, priv *ecdsa.PrivateKey, crv, alg string, method jwt.SigningMethod) testKey {
	pub, err := priv.PublicKey.ECDH()
	if err != nil {
		tb.Fatal(err)
	}
	b := pub.Bytes()[1:] // uncompressed point: 0x04 || X || Y
	return testKey{kid: kid, method: method, priv: priv, jwk: map[string]any{
		"kty": "EC", "kid": kid, "crv": crv, "alg": alg,
		"x": b64(b[:len(b)/2]), "y": b64(b[len(b)/2:]),
	}}
}

func p256Key(tb testing.TB, kid string) testKey {
	genKeys(tb)
	return ecKey(tb, kid, ecPriv, "P-256", "ES256", jwt.SigningMethodES256)
}

func p384Key(tb testing.TB, kid string) testKey {
	genKeys(tb)
	return ecKey(tb, kid, p384Priv, "P-384", "ES384", jwt.SigningMethodES384)
}

func ed25519Key(tb testing.TB, kid string) testKey {
	genKeys(tb)
	return testKey{kid: kid, method: jwt.SigningMethodEdDSA, priv: edPriv, jwk: map[string]any{
		"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(edPriv.Public().(ed25519.PublicKey)),
	}}
}

// sign returns a token over claims with k's algorithm and kid.
func (k testKey) sign(tb testing.TB, claims jwt.Claims) string {
	tb.Helper()
	return signWith(tb, k.method, k.kid, k.priv, claims)
}

func signWith(tb testing.TB, m jwt.SigningMethod, kid string, key any, claims jwt.Claims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// claimsAt are valid claims for the test policy at now.
func claimsAt(now time.Time) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{
		Issuer:    testIssuer,
		Subject:   "user-1",
		Audience:  jwt.ClaimStrings{testAudience},
		ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
	}
}

// issuer is an identity provider's JWKS endpoint over real HTTP.
type issuer struct {
	srv     *httptest.Server
	fetches atomic.Int64

	mu    sync.Mutex
	keys  []map[string]any
	down  bool          // answer 503
	block chan struct{} // when set, hold each request until it is closed
}

func newIssuer(tb testing.TB, keys ...testKey) *issuer {
	tb.Helper()
	is := &issuer{}
	is.setKeys(keys...)
	is.srv = httptest.NewServer(http.HandlerFunc(is.serve))
	tb.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) serve(w http.ResponseWriter, r *http.Request) {
	is.fetches.Add(1)
	is.mu.Lock()
	keys, down, block := is.keys, is.down, is.block
	is.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if down {
		http.Error(w, "identity provider down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

func (is *issuer) url() string { return is.srv.URL + "/.well-known/jwks.json" }

func (is *issuer) setKeys(keys ...testKey) {
	jwks := make([]map[string]any, len(keys))
	for i, k := range keys {
		jwks[i] = k.jwk
	}
	is.mu.Lock()
	is.keys = jwks
	is.mu.Unlock()
}

func (is *issuer) setDown(down bool) {
	is.mu.Lock()
	is.down = down
	is.mu.Unlock()
}

// hold makes requests wait until the returned function is called.
func (is *issuer) hold() (release func()) {
	ch := make(chan struct{})
	is.mu.Lock()
	is.block = ch
	is.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			is.mu.Lock()
			is.block = nil
			is.mu.Unlock()
			close(ch)
		})
	}
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_900_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// logBuffer collects log output from concurrent goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// env is a Verifiers on a fake clock in front of one issuer.
type env struct {
	v      *Verifiers
	is     *issuer
	clock  *clock
	logs   *logBuffer
	policy Policy
}

const testRefreshLimit = 30 * time.Second

func newEnv(t *testing.T, cfg Config, keys ...testKey) *env {
	t.Helper()
	e := &env{is: newIssuer(t, keys...), clock: newClock(), logs: &logBuffer{}}
	cfg.Now = e.clock.Now
	cfg.RefreshLimit = testRefreshLimit
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.v = New(cfg)
	t.Cleanup(e.v.Close)
	e.policy = Policy{Issuer: testIssuer, Audience: testAudience, JWKSURL: e.is.url()}
	return e
}

func (e *env) verify(token string) (Claims, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.v.Verify(ctx, e.policy, token)
}

// mustVerify fails the test unless token verifies.
func (e *env) mustVerify(t *testing.T, token string) Claims {
	t.Helper()
	c, err := e.verify(token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return c
}

// wantErr fails the test unless err wraps want.
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func (e *env) wantFetches(t *testing.T, n int64) {
	t.Helper()
	if got := e.is.fetches.Load(); got != n {
		t.Fatalf("issuer saw %d JWKS fetches, want %d", got, n)
	}
}
