// Package edgetest holds helpers the edge's tests share: addresses where
// nothing listens. (Polling lives in internal/testutil.)
package edgetest

import (
	"net"
	"testing"
)

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
