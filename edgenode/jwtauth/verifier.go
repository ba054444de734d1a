package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds the bearer tokens Verify will parse; longer ones are
// refused as ErrInvalidToken before any decoding.
const MaxTokenBytes = 16 << 10

// algorithms are the only signing algorithms accepted.
var algorithms = []string{"RS256", "ES256", "EdDSA"}

// Config configures Verifiers. Zero fields take the defaults shown.
type Config struct {
	// HTTPClient fetches key sets. Default http.DefaultClient.
	HTTPClient *http.Client
	// FetchTimeout bounds one key-set fetch. Default 10s.
	FetchTimeout time.Duration
	// CacheTTL is how often a key set is refetched in the background.
	// Default 1h.
	CacheTTL time.Duration
	// RefreshLimit is the minimum spacing, per JWKS URL, of fetches that
	// are not the timed ones: the first fetch, the retries while no fetch
	// has succeeded, and the refetches for unknown kids. Default 30s.
	RefreshLimit time.Duration
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// Now is the clock for token times and for RefreshLimit; nil uses
	// time.Now. (CacheTTL runs on real time.)
	Now func() time.Time
	// Logger receives fetch failures (warn) and fetches (debug); nil
	// discards.
	Logger *slog.Logger
}

// Claims are the verified claims of a token.
type Claims struct {
	// Subject is the sub claim ("" if absent).
	Subject string
	// Issuer is the iss claim, equal to the policy's issuer.
	Issuer string
	// Audience is the aud claim; it contains the policy's audience.
	Audience []string
	// ExpiresAt is the exp claim.
	ExpiresAt time.Time
	// IssuedAt is the iat claim (zero if absent).
	IssuedAt time.Time
}

// Verifiers verifies bearer tokens for any number of policies, holding one
// key-set cache per JWKS URL (see the package doc). It is safe for
// concurrent use. Close stops its background fetches.
type Verifiers struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // ends at Close; bounds every fetch
	cancel context.CancelFunc

	mu     sync.Mutex
	sets   map[string]*keySet // by JWKS URL
	closed bool
	wg     sync.WaitGroup // fetches started by keySet.refresh
}

// New returns Verifiers with no key set fetched yet; each JWKS URL is fetched
// on its first Verify.
func New(cfg Config) *Verifiers {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Hour
	}
	if cfg.RefreshLimit <= 0 {
		cfg.RefreshLimit = 30 * time.Second
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Verifiers{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, sets: make(map[string]*keySet)}
}

// Close cancels fetches in flight and stops the timed refreshes, then waits
// for the fetches it started itself. Verify then returns ErrClosed. Close
// may be called more than once.
func (v *Verifiers) Close() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
}

// spawn runs f in a goroutine that Close waits for, unless v is closed.
func (v *Verifiers) spawn(f func()) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return false
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		f()
	}()
	return true
}

// keySet returns the cache for url, creating it (without fetching) on first
// use.
func (v *Verifiers) keySet(url string) (*keySet, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, ErrClosed
	}
	if s, ok := v.sets[url]; ok {
		return s, nil
	}
	if err := validateJWKSURL(url); err != nil {
		return nil, err
	}
	s, err := newKeySet(v, url)
	if err != nil {
		return nil, err
	}
	v.sets[url] = s
	return s, nil
}

// Verify checks a bearer token (without its "Bearer " prefix) against p and
// returns its claims. The first call for a JWKS URL waits for its first fetch,
// as long as ctx allows; a token with an unknown kid may wait for one refetch.
// Every other call reads only cached keys.
//
// Errors wrap one of the package's sentinels: ErrMissingToken,
// ErrInvalidToken, ErrExpired, ErrWrongAudience, ErrWrongIssuer,
// ErrUnknownKey (401), ErrJWKSUnavailable (503), ErrInvalidPolicy or
// ErrClosed.
func (v *Verifiers) Verify(ctx context.Context, p Policy, token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissingToken
	}
	if len(token) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidToken, len(token), MaxTokenBytes)
	}
	if err := p.validateClaims(); err != nil {
		return Claims{}, err
	}
	s, err := v.keySet(p.JWKSURL)
	if err != nil {
		return Claims{}, err
	}
	if !s.loaded() && !(s.refresh(ctx) && s.loaded()) {
		return Claims{}, s.unavailable(ctx.Err())
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithTimeFunc(v.cfg.Now),
		jwt.WithIssuer(p.Issuer),
		jwt.WithAudience(p.Audience),
	)
	var rc jwt.RegisteredClaims
	if _, err := parser.ParseWithClaims(token, &rc, s.keyfunc(ctx)); err != nil {
		return Claims{}, classify(err)
	}
	c := Claims{Subject: rc.Subject, Issuer: rc.Issuer, Audience: rc.Audience, ExpiresAt: rc.ExpiresAt.Time}
	if rc.IssuedAt != nil {
		c.IssuedAt = rc.IssuedAt.Time
	}
	return c, nil
}

// classify maps a jwt error to this package's sentinels, keeping the
// library's error in the chain. When several claims fail, the one naming the
// token's origin wins over the one about its age.
func classify(err error) error {
	var sentinel error
	switch {
	case errors.Is(err, jwkset.ErrKeyNotFound):
		sentinel = ErrUnknownKey
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		sentinel = ErrWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		sentinel = ErrWrongAudience
	case errors.Is(err, jwt.ErrTokenExpired):
		sentinel = ErrExpired
	default:
		sentinel = ErrInvalidToken
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// BearerToken extracts the token from an Authorization header value
// ("Bearer <token>", the scheme case-insensitive). It returns ErrMissingToken
// when the value is empty, uses another scheme, or carries no token.
func BearerToken(authorization string) (string, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrMissingToken
	}
	if token = strings.TrimSpace(token); token == "" {
		return "", ErrMissingToken
	}
	return token, nil
}
