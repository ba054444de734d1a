package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/testutil"
)

func TestUnknownKidTriggersOneRefetch(t *testing.T) {
	old, rotated := p256Key(t, "ec-1"), ed25519Key(t, "ed-2")
	e := newEnv(t, Config{}, old)
	e.mustVerify(t, old.sign(t, claimsAt(e.clock.Now())))
	e.wantFetches(t, 1)

	// A kid the issuer does not publish: one refetch, then 401.
	e.clock.Add(testRefreshLimit)
	token := rotated.sign(t, claimsAt(e.clock.Now()))
	_, err := e.verify(token)
	wantErr(t, err, ErrUnknownKey)
	e.wantFetches(t, 2)

	// The issuer publishes the key. Within RefreshLimit of the last
	// refetch the edge does not ask again.
	e.is.setKeys(old, rotated)
	_, err = e.verify(token)
	wantErr(t, err, ErrUnknownKey)
	e.wantFetches(t, 2)

	// Once RefreshLimit has passed, the same token makes the edge refetch
	// once, and it verifies; so do later tokens, from the cache.
	e.clock.Add(testRefreshLimit)
	e.mustVerify(t, token)
	e.wantFetches(t, 3)
	e.mustVerify(t, rotated.sign(t, claimsAt(e.clock.Now())))
	e.mustVerify(t, old.sign(t, claimsAt(e.clock.Now())))
	e.wantFetches(t, 3)
}

func TestFloodOfUnknownKidsRefetchesAtMostOnce(t *testing.T) {
	k := rsaKey(t, "rsa-1")
	e := newEnv(t, Config{}, k)
	e.mustVerify(t, k.sign(t, claimsAt(e.clock.Now())))
	e.clock.Add(testRefreshLimit) // one refetch is allowed again

	attacker := p256Key(t, "")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			_, err := e.verify(signWith(t, attacker.method, fmt.Sprintf("random-%d", i), attacker.priv, claimsAt(e.clock.Now())))
			errs <- err
		})
	}
	// A legitimate token keeps verifying during the flood.
	e.mustVerify(t, k.sign(t, claimsAt(e.clock.Now())))
	wg.Wait()
	close(errs)
	for err := range errs {
		wantErr(t, err, ErrUnknownKey)
	}
	e.wantFetches(t, 2)
}

func TestIssuerDownServesFromCachedKeys(t *testing.T) {
	keys := []testKey{rsaKey(t, "rsa-1"), p256Key(t, "ec-1"), ed25519Key(t, "ed-1")}
	e := newEnv(t, Config{CacheTTL: 10 * time.Millisecond}, keys...)
	for _, k := range keys {
		e.mustVerify(t, k.sign(t, claimsAt(e.clock.Now())))
	}

	e.is.srv.Close()
	// Timed refetches fail and are logged; the keys stay.
	testutil.Poll(t, "a logged failure of the timed refetch", func() bool {
		return strings.Contains(e.logs.String(), "jwks fetch failed")
	})
	for _, k := range keys {
		e.mustVerify(t, k.sign(t, claimsAt(e.clock.Now())))
	}
	// An unknown kid still gets a 401, not a 503: the set was fetched.
	e.clock.Add(testRefreshLimit)
	_, err := e.verify(signWith(t, keys[1].method, "ec-2", keys[1].priv, claimsAt(e.clock.Now())))
	wantErr(t, err, ErrUnknownKey)
	for _, k := range keys {
		e.mustVerify(t, k.sign(t, claimsAt(e.clock.Now())))
	}
	if logs := e.logs.String(); !strings.Contains(logs, "jwks_url="+e.is.url()) || !strings.Contains(logs, "keys=3") {
		t.Fatalf("fetch failures should name the URL and the keys kept:\n%s", logs)
	}
}

func TestIssuerDownFromTheStartIsUnavailable(t *testing.T) {
	k := p256Key(t, "ec-1")
	e := newEnv(t, Config{}, k)
	e.is.srv.Close()
	_, err := e.verify(k.sign(t, claimsAt(e.clock.Now())))
	wantErr(t, err, ErrJWKSUnavailable)
	if !strings.Contains(err.Error(), e.is.url()) {
		t.Fatalf("error %q should name the JWKS URL", err)
	}
}

func TestIssuerRecoveringAfterFailedFirstFetch(t *testing.T) {
	k := p256Key(t, "ec-1")
	e := newEnv(t, Config{}, k)
	e.is.setDown(true)
	token := k.sign(t, claimsAt(e.clock.Now()))
	_, err := e.verify(token)
	wantErr(t, err, ErrJWKSUnavailable)
	if !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %q should carry the fetch failure", err)
	}
	e.wantFetches(t, 1)

	// Retries are spaced by RefreshLimit, even once the issuer is back.
	e.is.setDown(false)
	for range 10 {
		_, err = e.verify(token)
		wantErr(t, err, ErrJWKSUnavailable)
	}
	e.wantFetches(t, 1)

	e.clock.Add(testRefreshLimit)
	e.mustVerify(t, token)
	e.wantFetches(t, 2)
}

func TestFirstFetchIsSharedAndBoundedByTheCallersContext(t *testing.T) {
	k := p256Key(t, "ec-1")
	e := newEnv(t, Config{}, k)
	release := e.is.hold()
	t.Cleanup(release)
	token := k.sign(t, claimsAt(e.clock.Now()))

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := e.v.Verify(ctx, e.policy, token)
	wantErr(t, err, ErrJWKSUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v should say the caller's deadline passed", err)
	}

	// Callers arriving meanwhile wait for the same fetch, which was not
	// abandoned with the first caller.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := e.verify(token)
			errs <- err
		})
	}
	s, err := e.v.keySet(e.policy.JWKSURL)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, "20 callers waiting for the fetch in flight", func() bool { return s.waiting.Load() == 20 })
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("verify after the first fetch: %v", err)
		}
	}
	e.wantFetches(t, 1)
}

func TestCellsNamingOneJWKSURLShareItsCache(t *testing.T) {
	k := ed25519Key(t, "ed-1")
	e := newEnv(t, Config{}, k)
	other := newIssuer(t, k)
	policies := []Policy{
		e.policy,
		{Issuer: testIssuer, Audience: "cell-b", JWKSURL: e.is.url()},
		{Issuer: testIssuer, Audience: "cell-c", JWKSURL: other.url()},
	}
	for _, p := range policies {
		c := claimsAt(e.clock.Now())
		c.Audience = []string{p.Audience}
		if _, err := e.v.Verify(t.Context(), p, k.sign(t, c)); err != nil {
			t.Fatalf("verify for %s: %v", p.Audience, err)
		}
	}
	e.wantFetches(t, 1)
	if n := other.fetches.Load(); n != 1 {
		t.Fatalf("second issuer saw %d fetches, want 1", n)
	}
}

func TestKeysAreRefetchedEveryCacheTTL(t *testing.T) {
	old, rotated := p256Key(t, "ec-1"), rsaKey(t, "rsa-2")
	e := newEnv(t, Config{CacheTTL: 20 * time.Millisecond}, old)
	e.mustVerify(t, old.sign(t, claimsAt(e.clock.Now())))

	// The fake clock stands still, so RefreshLimit forbids any refetch on
	// demand: only the timed one can bring the rotated key in.
	e.is.setKeys(rotated)
	token := rotated.sign(t, claimsAt(e.clock.Now()))
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := e.verify(token)
		return err
	})
	// The old key was dropped with the set that no longer holds it.
	_, err := e.verify(old.sign(t, claimsAt(e.clock.Now())))
	wantErr(t, err, ErrUnknownKey)
}

func TestCloseStopsFetchesAndVerification(t *testing.T) {
	k := p256Key(t, "ec-1")
	e := newEnv(t, Config{FetchTimeout: time.Minute}, k)
	release := e.is.hold()
	t.Cleanup(release)
	token := k.sign(t, claimsAt(e.clock.Now()))

	done := make(chan error, 1)
	go func() {
		_, err := e.v.Verify(context.Background(), e.policy, token)
		done <- err
	}()
	testutil.Poll(t, "the first fetch to reach the issuer", func() bool { return e.is.fetches.Load() == 1 })
	closed := make(chan struct{})
	go func() {
		e.v.Close()
		close(closed)
	}()
	select {
	case <-closed: // although the issuer never answered
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a fetch the issuer never answers")
	}
	wantErr(t, <-done, ErrJWKSUnavailable)

	_, err := e.verify(token)
	wantErr(t, err, ErrClosed)
}
