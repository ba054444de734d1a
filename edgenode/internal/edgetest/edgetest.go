// Package edgetest holds helpers the edge's tests share: addresses where
// nothing listens. (Polling lives in internal/testutil.)
package edgetest

import (
	"testing"

	"github.com/edgecell/edgecell/internal/freeport"
)

// ClosedAddr returns a loopback host:port where nothing listens: a
// connection attempt is refused at once. The port is drawn below the
// kernel's ephemeral range (internal/freeport): a port freed from that range
// is soon handed to another test's listener on :0, which would then answer
// in place of the "dead" endpoint.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
