package raftstore

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// newTransport listens on bindAddr and returns raft's network transport. With
// dial nil it is raft's own TCP transport; otherwise peers are dialed through
// dial (latency simulation injects one), over the same kind of listener.
func newTransport(bindAddr string, advertise net.Addr, dial func(ctx context.Context, network, addr string) (net.Conn, error), logger hclog.Logger) (*raft.NetworkTransport, error) {
	cfg := &raft.NetworkTransportConfig{
		MaxPool: 3, Timeout: 10 * time.Second, Logger: logger,
		// 1 disables pipelined replication. With the default (2) its
		// channels are unbuffered, and after a follower answers
		// Success=false the sender can park on one while the decoder parks
		// on the other: replication to that follower stops for good and
		// Shutdown hangs (seen here in CI; the same deadlock is analysed in
		// grafana/pyroscope#5518). Batching (MaxAppendEntries) still groups
		// entries, so throughput holds.
		MaxRPCsInFlight: 1,
	}
	if dial == nil {
		return raft.NewTCPTransportWithConfig(bindAddr, advertise, cfg)
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, err
	}
	stream := &dialStreamLayer{ln: ln, advertise: advertise, dial: dial}
	// As raft's TCP transport: peers must be able to reach what is advertised.
	if addr, ok := stream.Addr().(*net.TCPAddr); !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, errors.New("local bind address is not advertisable: give a raft address with a specific host")
	}
	cfg.Stream = stream
	return raft.NewNetworkTransportWithConfig(cfg), nil
}

// dialStreamLayer is raft's TCP stream layer with an injected dialer.
type dialStreamLayer struct {
	ln        net.Listener
	advertise net.Addr // nil: the bound address
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial opens a connection to a peer within raft's timeout.
func (s *dialStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, "tcp", string(address))
}

// Accept waits for a peer's connection.
func (s *dialStreamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }

// Close stops listening.
func (s *dialStreamLayer) Close() error { return s.ln.Close() }

// Addr is the advertised address, or the bound one.
func (s *dialStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}
