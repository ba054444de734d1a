package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// keySet is the cache of one JWKS URL.
//
// Fetches go through jwkset. The first creates jwkset's HTTP storage with a
// refresh interval, which fetches once and then again every CacheTTL in its
// own goroutine until Verifiers.Close. Later on-demand fetches (unknown kid,
// no successful fetch yet) are one-shot jwkset storages writing into the same
// store. All of them replace the store's keys only on success, so a failed
// fetch never loses keys.
//
// We do not use jwkset's own unknown-kid refresh (HTTPClientOptions.
// RefreshUnknownKID): it makes callers wait for the limiter, bounds the fetch
// by that same wait and by the caller's context, queues concurrent callers for
// fetches of their own instead of sharing one, and cannot tell "never
// fetched" from "unknown kid".
type keySet struct {
	v     *Verifiers
	url   string
	store *trackedStore
	kf    keyfunc.Keyfunc

	mu       sync.Mutex
	limiter  *rate.Limiter // on-demand fetches; fed by v.cfg.Now
	inflight chan struct{} // closed when the fetch in flight ends; nil if none
	timed    bool          // the timed refresher exists
	lastErr  error         // of the last failed fetch

	waiting atomic.Int32 // callers waiting in refresh; read by tests
}

func newKeySet(v *Verifiers, url string) (*keySet, error) {
	s := &keySet{
		v:       v,
		url:     url,
		limiter: rate.NewLimiter(rate.Every(v.cfg.RefreshLimit), 1),
	}
	s.store = &trackedStore{MemoryJWKSet: jwkset.NewMemoryStorage(), onReplace: s.replaced}
	kf, err := keyfunc.New(keyfunc.Options{
		Storage: s.store,
		// Keys marked for encryption never verify signatures; most sets
		// leave "use" out.
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		return nil, fmt.Errorf("jwtauth: key set for %s: %w", url, err)
	}
	s.kf = kf
	return s, nil
}

// loaded reports whether a fetch has ever succeeded.
func (s *keySet) loaded() bool { return s.store.generation.Load() > 0 }

// unavailable is the error for a key set never fetched.
func (s *keySet) unavailable(ctxErr error) error {
	s.mu.Lock()
	last := s.lastErr
	s.mu.Unlock()
	if last == nil {
		last = ctxErr
	}
	if last == nil {
		last = errors.New("fetch rate-limited")
	}
	return fmt.Errorf("%w: no keys fetched yet from %s: %w", ErrJWKSUnavailable, s.url, last)
}

// refresh fetches the key set unless a fetch is in flight (then it joins it)
// or the limiter refuses. It waits until the fetch ends or ctx does, and
// reports whether a fetch ended while it waited (not whether it succeeded).
// The fetch itself is not bound to ctx: a caller giving up does not waste the
// limiter's permit.
func (s *keySet) refresh(ctx context.Context) bool {
	s.mu.Lock()
	done := s.inflight
	if done == nil {
		if !s.limiter.AllowN(s.v.cfg.Now(), 1) {
			s.mu.Unlock()
			return false
		}
		done = make(chan struct{})
		timed := !s.timed
		s.timed = true
		if !s.v.spawn(func() { s.fetch(timed, done) }) {
			s.mu.Unlock()
			return false
		}
		s.inflight = done
	}
	s.mu.Unlock()
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *keySet) fetch(timed bool, done chan struct{}) {
	defer func() {
		s.mu.Lock()
		s.inflight = nil
		s.mu.Unlock()
		close(done)
	}()
	opts := jwkset.HTTPClientStorageOptions{
		Client:      s.v.cfg.HTTPClient,
		Ctx:         s.v.ctx,
		HTTPTimeout: s.v.cfg.FetchTimeout,
		Storage:     s.store,
	}
	if timed {
		// Fetches now, then every CacheTTL until v.ctx ends; failures,
		// including this first one, go to the handler.
		opts.RefreshInterval = s.v.cfg.CacheTTL
		opts.NoErrorReturnFirstHTTPReq = true
		opts.RefreshErrorHandler = func(_ context.Context, err error) { s.failed(err) }
	}
	if _, err := jwkset.NewStorageFromHTTP(s.url, opts); err != nil {
		s.failed(err)
	}
}

func (s *keySet) failed(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	if s.v.ctx.Err() != nil {
		return // cancelled by Close, not the issuer's fault
	}
	s.v.log.Warn("jwks fetch failed; keeping the keys fetched before",
		"jwks_url", s.url, "keys", s.store.count.Load(), "err", err)
}

func (s *keySet) replaced(n int) {
	s.v.log.Debug("jwks fetched", "jwks_url", s.url, "keys", n)
}

// keyfunc returns the jwt.Keyfunc for one Verify call: the key named by the
// token's kid (or every key, for a token without kid), refetching the set
// once if the kid is unknown.
func (s *keySet) keyfunc(ctx context.Context) jwt.Keyfunc {
	lookup := s.kf.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		gen := s.store.generation.Load()
		key, err := lookup(t)
		if !errors.Is(err, jwkset.ErrKeyNotFound) {
			return key, err
		}
		// The issuer may have rotated its keys. Look again if the set
		// changed since the lookup, or if a fetch ended meanwhile.
		if s.store.generation.Load() != gen || s.refresh(ctx) {
			return lookup(t)
		}
		return nil, err
	}
}

// trackedStore is jwkset's memory storage, counting successful fetches:
// jwkset calls KeyReplaceAll only after fetching and decoding a whole set.
type trackedStore struct {
	*jwkset.MemoryJWKSet
	onReplace  func(keys int)
	generation atomic.Uint64
	count      atomic.Int64
}

// KeyReplaceAll implements jwkset.Storage.
func (t *trackedStore) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if err := t.MemoryJWKSet.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	t.count.Store(int64(len(given)))
	t.generation.Add(1)
	t.onReplace(len(given))
	return nil
}

var _ jwkset.Storage = (*trackedStore)(nil)
