package report

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrNoCoordinator: no coordinator address is known yet.
var ErrNoCoordinator = errors.New("no coordinator address known")

// reconnect bounds how long a connection to a coordinator that went away
// waits before trying again. gRPC's default grows to two minutes, which
// would keep an edge from a restarted coordinator (and signed requests
// failing) long after it is back.
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
	MinConnectTimeout: 2 * time.Second,
}

// Conns keeps one gRPC connection per coordinator address for everything the
// edge asks the coordinators outside the Watch stream: reports, probes and
// nonce checks share them. Client and Failed serve callers that use one
// coordinator at a time (the reporters); Addrs and ClientFor serve those that
// choose among them (the nonce client). Safe for concurrent use; Close
// releases every connection.
type Conns struct {
	addrs func() []string
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	creds credentials.TransportCredentials

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	next  int // rotates through addrs after failures
}

// NewConns returns a Conns choosing among addrs(), the preferred address
// first (the coordinator the watch streams from, when there is one); addrs
// may repeat an address. dial opens connections; nil uses a net.Dialer.
// creds secure them (the edge's certificate, accepting coordinators only);
// nil is plaintext.
func NewConns(addrs func() []string, dial func(ctx context.Context, network, addr string) (net.Conn, error), creds credentials.TransportCredentials) *Conns {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return &Conns{addrs: addrs, dial: dial, creds: creds, conns: map[string]*grpc.ClientConn{}}
}

// Addrs returns the coordinator addresses known now, the preferred first,
// each once.
func (c *Conns) Addrs() []string {
	all := c.addrs()
	out := make([]string, 0, len(all))
	for _, a := range all {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Client returns a client for the preferred address, or for the next one
// after Failed was called. Connections are made lazily by gRPC.
func (c *Conns) Client() (pb.EdgeServiceClient, error) {
	addrs := c.Addrs()
	if len(addrs) == 0 {
		return nil, ErrNoCoordinator
	}
	c.mu.Lock()
	addr := addrs[c.next%len(addrs)]
	c.mu.Unlock()
	return c.ClientFor(addr)
}

// ClientFor returns a client for the coordinator at addr, on the
// connection kept for it. The connection is made lazily by gRPC; a call on
// a connection that cannot be made fails at once (it does not wait for
// the coordinator), so the caller can move on to another one.
func (c *Conns) ClientFor(addr string) (pb.EdgeServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.conns[addr]
	if cc == nil {
		var err error
		cc, err = grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(c.creds),
			grpc.WithConnectParams(reconnect),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return c.dial(ctx, "tcp", a) }))
		if err != nil {
			return nil, err
		}
		c.conns[addr] = cc
	}
	return pb.NewEdgeServiceClient(cc), nil
}

// Failed moves the next Client call to the next address.
func (c *Conns) Failed() {
	c.mu.Lock()
	c.next++
	c.mu.Unlock()
}

// Close closes every connection.
func (c *Conns) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, cc := range c.conns {
		cc.Close()
		delete(c.conns, a)
	}
}
