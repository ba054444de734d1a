// Package testutil holds helpers shared by edgecell's tests: polling with a
// deadline (never sleeping to synchronise) and free loopback ports.
package testutil

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/freeport"
)

// Eventually polls cond every few milliseconds until it returns nil or the
// timeout passes, then fails the test with the last error.
func Eventually(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(wait) // polling interval, not synchronisation: cond decides
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// Poll is Eventually for a plain condition, with a ten-second deadline; the
// failure names what was awaited.
func Poll(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, 10*time.Second, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("timed out waiting for %s", what)
	})
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
// Use it only where an address must be known before the listener exists (raft
// peers named in an initial cluster, restarts on the same address); otherwise
// listen on 127.0.0.1:0.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	addr, err := freeport.Loopback()
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	return addr
}
