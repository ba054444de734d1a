package report

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc/credentials"
)

// ErrNoCoordinator: no coordinator address is known yet.
var ErrNoCoordinator = errors.New("no coordinator address known")

// Conns is the edge's pool of coordinator connections, under its former
// name.
//
// Deprecated: use coordconn.Pool.
type Conns = coordconn.Pool

// NewConns returns a pool choosing among addrs(), in that order of
// preference (addrs may repeat an address). dial opens connections; nil
// uses a net.Dialer. creds secure them; nil is plaintext.
//
// Deprecated: use coordconn.New, which orders the members by region.
func NewConns(addrs func() []string, dial func(ctx context.Context, network, addr string) (net.Conn, error), creds credentials.TransportCredentials) *Conns {
	return coordconn.New(coordconn.Config{Addrs: addrs, DialContext: dial, Creds: creds})
}

// caller runs one RPC within a timeout on the coordinator the pool picks
// for a Followed call (the one the watch streams from, while it is
// healthy), and tells the pool how it went: a member that failed is not
// the next call's first choice.
type caller struct {
	coords  *coordconn.Pool
	timeout time.Duration
}

func (c caller) call(ctx context.Context, fn func(context.Context, pb.EdgeServiceClient) error) error {
	cand, ok := c.coords.Pick(coordconn.Followed, nil)
	if !ok {
		return ErrNoCoordinator
	}
	cl, err := c.coords.Client(cand.Addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	if err := fn(ctx, cl); err != nil {
		c.coords.Failed(cand.Addr, err)
		return err
	}
	c.coords.Answered(cand.Addr, coordconn.Followed, time.Since(start))
	return nil
}
