// Package freeport finds loopback ports for addresses that must be known
// before anything listens on them: raft peers named in an initial cluster,
// and members restarted on the address they had.
//
// It picks ports below the kernel's ephemeral range, so an outgoing
// connection (which takes its local port from that range) can never occupy a
// port between the moment it is chosen and the moment it is (re)bound.
// Concurrent users still race each other; ports are drawn at random to make
// that unlikely.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

const lowest = 10000

// Loopback returns "127.0.0.1:PORT" for a port nothing listens on now.
func Loopback() (string, error) {
	below := ephemeralStart()
	if below-lowest < 1000 {
		return anyPort() // no room below the ephemeral range: take one from it
	}
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lowest+rand.IntN(below-lowest)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr, nil
	}
	return "", fmt.Errorf("freeport: no free loopback port in [%d, %d)", lowest, below)
}

func anyPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ephemeralStart is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
