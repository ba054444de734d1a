package report

import (
	"context"
	"errors"
	"net"
	"sync"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrNoCoordinator: no coordinator address is known yet.
var ErrNoCoordinator = errors.New("no coordinator address known")

// Conns hands out EdgeService clients for the coordinator the edge should
// report to, keeping one gRPC connection per address. Safe for concurrent
// use; Close releases every connection.
type Conns struct {
	addrs func() []string
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	next  int // rotates through addrs after failures
}

// NewConns returns a Conns choosing among addrs(), the preferred address
// first (the coordinator the watch streams from, when there is one). dial
// opens connections; nil uses a net.Dialer.
func NewConns(addrs func() []string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Conns {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return &Conns{addrs: addrs, dial: dial, conns: map[string]*grpc.ClientConn{}}
}

// Client returns a client for the preferred address, or for the next one
// after Failed was called. Connections are made lazily by gRPC.
func (c *Conns) Client() (pb.EdgeServiceClient, error) {
	addrs := c.addrs()
	if len(addrs) == 0 {
		return nil, ErrNoCoordinator
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	addr := addrs[c.next%len(addrs)]
	cc := c.conns[addr]
	if cc == nil {
		var err error
		cc, err = grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
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
