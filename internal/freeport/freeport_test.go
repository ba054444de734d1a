package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestLoopbackIsBindableAndOutsideTheEphemeralRange(t *testing.T) {
	for range 20 {
		addr, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if start := ephemeralStart(); start-lowest >= 1000 && (port < lowest || port >= start) {
			t.Fatalf("port %d outside [%d, %d)", port, lowest, start)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("cannot bind %s: %v", addr, err)
		}
		l.Close()
	}
}
