package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/edgecell/edgecell/internal/clusterid"
	"github.com/edgecell/edgecell/internal/pki"
)

// newTransport listens on bindAddr and returns raft's network transport over
// a stream layer that dials peers through dial (nil: plain TCP; latency
// simulation injects one), runs every connection over mutual TLS with
// coordinator certificates when tlsSrc is set, and opens it with a handshake
// (see handshake). cluster is this member's cluster id ("" while unknown),
// read at every handshake.
func newTransport(bindAddr string, advertise net.Addr, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	tlsSrc *pki.Source, cluster func() string, logger hclog.Logger) (*raft.NetworkTransport, error) {
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
		dial = (&net.Dialer{}).DialContext
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, err
	}
	stream := &dialStreamLayer{ln: ln, advertise: advertise, dial: dial, cluster: cluster, log: logger}
	if tlsSrc != nil {
		stream.serverTLS = tlsSrc.StrictServerConfig(pki.RoleCoordinator)
		stream.clientTLS = tlsSrc.ClientConfig(pki.RoleCoordinator)
	}
	// As raft's TCP transport: peers must be able to reach what is advertised.
	if addr, ok := stream.Addr().(*net.TCPAddr); !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, errors.New("local bind address is not advertisable: give a raft address with a specific host")
	}
	cfg.Stream = stream
	return raft.NewNetworkTransportWithConfig(cfg), nil
}

// dialStreamLayer is raft's TCP stream layer with an injected dialer, TLS
// and the handshake.
type dialStreamLayer struct {
	ln        net.Listener
	advertise net.Addr // nil: the bound address
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	cluster   func() string
	log       hclog.Logger
	// serverTLS and clientTLS are nil for plaintext.
	serverTLS, clientTLS *tls.Config
}

// The handshake. Every raft connection starts with one line,
//
//	edgecell-raft/2 cluster=<cluster id, empty while the dialer knows none>\n
//
// and an accepted connection that does not is closed before raft decodes a
// byte of it. Anything else reaching the raft port (a scanner, an HTTP
// client, a peer of another protocol version) then costs a few bytes and a
// log line, not a msgpack decode of whatever it sent. When both ends know
// their cluster id and the ids differ, the connection is refused too: a
// member of another cluster (or a data dir moved between clusters) can
// neither replicate to this member nor vote in its elections. A member that
// knows no id yet (a new cluster before its first leader committed one, a
// wiped member joining) is accepted and learns it from the log. With TLS
// the line is sent inside the TLS session, after both ends proved they hold
// coordinator certificates from the cluster CA.
const raftHandshakePrefix = "edgecell-raft/2 cluster="

// maxHandshake bounds the line: the prefix, an id and the newline.
const maxHandshake = len(raftHandshakePrefix) + clusterid.MaxLen + 1

const handshakeTimeout = 5 * time.Second

func handshakeLine(cluster string) []byte { return []byte(raftHandshakePrefix + cluster + "\n") }

// Dial opens a connection to a peer within raft's timeout and sends the
// handshake.
func (s *dialStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := s.dial(ctx, "tcp", string(address))
	if err != nil {
		return nil, err
	}
	if s.clientTLS != nil {
		tc := tls.Client(conn, s.clientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("raft TLS handshake with %s: %w", address, err)
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write(handshakeLine(s.cluster())); err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w", address, err)
	}
	conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// Accept waits for a peer's connection. The handshake is read on the
// connection's first Read, in raft's goroutine for that connection, so a
// slow or silent peer never holds up the accept loop.
func (s *dialStreamLayer) Accept() (net.Conn, error) {
	conn, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if s.serverTLS != nil {
		// No I/O yet: the TLS handshake runs in handshake, on first Read.
		conn = tls.Server(conn, s.serverTLS)
	}
	return &handshakeConn{Conn: conn, layer: s}, nil
}

// Close stops listening.
func (s *dialStreamLayer) Close() error { return s.ln.Close() }

// Addr is the advertised address, or the bound one.
func (s *dialStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}

// handshakeConn is an accepted connection whose handshake is checked before
// raft reads anything from it.
type handshakeConn struct {
	net.Conn
	layer *dialStreamLayer
	once  sync.Once
	err   error
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		if c.err = c.handshake(); c.err != nil {
			c.layer.log.Error("refused a raft connection", "remote", c.RemoteAddr().String(), "error", c.err.Error())
			c.Conn.Close()
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

func (c *handshakeConn) handshake() error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	if tc, ok := c.Conn.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("raft TLS handshake: %w", err)
		}
	}
	peer, err := readHandshake(c.Conn)
	if err != nil {
		return err
	}
	if mine := c.layer.cluster(); mine != "" && peer != "" && peer != mine {
		return fmt.Errorf("raft handshake: the peer belongs to cluster %s and this member to cluster %s; "+
			"a member moves to another cluster only by being removed, wiping its data dir and running cluster join", peer, mine)
	}
	return nil
}

// readHandshake reads the handshake line byte by byte (never past it: what
// follows is raft's) and returns the peer's cluster id.
func readHandshake(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("raft handshake: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
		if len(line) == len(raftHandshakePrefix) && string(line) != raftHandshakePrefix ||
			len(line) >= maxHandshake {
			break
		}
	}
	id, ok := strings.CutPrefix(string(line), raftHandshakePrefix)
	if !ok || len(line) >= maxHandshake {
		return "", errors.New("raft handshake: the peer did not open with edgecell's raft handshake (another program, or an edgecell of another raft protocol version)")
	}
	if id != "" {
		if err := clusterid.Validate(id); err != nil {
			return "", fmt.Errorf("raft handshake: %w", err)
		}
	}
	return id, nil
}
