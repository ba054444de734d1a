// Package edgetest holds the helpers the edge's tests share: polling for a
// condition instead of sleeping, and addresses where nothing listens.
package edgetest

import (
	"net"
	"testing"
	"time"
)

// Poll calls cond every few milliseconds until it holds, failing t after ten
// seconds with "timed out waiting for <what>".
func Poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ClosedAddr returns a loopback host:port where nothing listens: a
// connection attempt is refused at once.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
