package coordconn

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
	"google.golang.org/grpc/keepalive"
)

// ErrClosed: the pool was closed.
var ErrClosed = errors.New("coordconn: pool closed")

// Config configures a Pool. Everything is optional, but a pool with no
// members, seeds nor Addrs has no coordinator to offer.
type Config struct {
	// Edge and Region are this edge's: Region's members are preferred, and
	// Edge seeds the per-edge order within a region.
	Edge, Region string
	// Seeds are the configured coordinator addresses, used after the
	// members the table lists.
	Seeds []string
	// Members returns the coordinators the served table lists (it is
	// called on every Pick and must be cheap: route.Table.Members is).
	// Nil: none, the seeds only.
	Members func() []*pb.Member
	// Addrs, if set, replaces Members and Seeds: the addresses to choose
	// from, in the order to prefer them (report.NewConns, tests).
	Addrs func() []string
	// DialContext opens connections; nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Creds secure them (the edge's certificate, accepting coordinators
	// only); nil is plaintext.
	Creds credentials.TransportCredentials
	// Now is the clock of the failure penalties; nil uses time.Now.
	Now func() time.Time
}

// reconnect bounds how long a connection to a coordinator that went away
// waits before trying again. gRPC's default grows to two minutes, which
// would keep an edge from a restarted coordinator (and signed requests
// failing) long after it is back.
var reconnect = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
	MinConnectTimeout: 2 * time.Second,
}

// pings notices a dead path on an idle connection (the coordinators permit
// a ping every 5s, with or without a stream).
var pings = keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

// Pool keeps one gRPC connection per coordinator address and chooses among
// them; see the package doc. Safe for concurrent use; Close releases every
// connection.
type Pool struct {
	cfg Config

	mu       sync.Mutex
	closed   bool
	conns    map[string]*grpc.ClientConn
	state    map[string]*member
	order    ordered
	followed string // the member the watch stream follows; "" none
	leader   string // the leader's address as the last NOT_LEADER named it; "" unknown
	picks    uint64 // Leader picks, for exploration
}

// New returns a pool; connections are made as calls need them.
func New(cfg Config) *Pool {
	if cfg.DialContext == nil {
		cfg.DialContext = (&net.Dialer{}).DialContext
	}
	if cfg.Creds == nil {
		cfg.Creds = insecure.NewCredentials()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pool{cfg: cfg, conns: map[string]*grpc.ClientConn{}, state: map[string]*member{}}
}

// Conn returns the connection kept for the coordinator at addr, making it
// (lazily: it connects on its first call) if there is none.
func (p *Pool) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if cc := p.conns[addr]; cc != nil {
		return cc, nil
	}
	dial := p.cfg.DialContext
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(p.cfg.Creds),
		grpc.WithConnectParams(reconnect),
		grpc.WithKeepaliveParams(pings),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dial(ctx, "tcp", a) }))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = cc
	return cc, nil
}

// Client returns an EdgeService client on Conn(addr).
func (p *Pool) Client(addr string) (pb.EdgeServiceClient, error) {
	cc, err := p.Conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewEdgeServiceClient(cc), nil
}

// Follow records that the watch stream follows the member at addr ("":
// none, between sessions); Followed calls prefer it.
func (p *Pool) Follow(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.followed
	p.followed = addr
	if old != "" && old != addr && p.order.valid && !slices.ContainsFunc(p.order.cands, func(c Candidate) bool { return c.Addr == old }) {
		p.forget(old) // left the members while the watch followed it
	}
}

// Following is the address Follow last recorded, or "".
func (p *Pool) Following() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.followed
}

// Close closes every connection; calls on them fail, and Conn fails with
// ErrClosed from then on. Later calls do nothing.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for a, cc := range p.conns {
		cc.Close()
		delete(p.conns, a)
	}
}

// forget closes the connection and drops what is known of addr, a member
// the table no longer lists; p.mu is held.
func (p *Pool) forget(addr string) {
	if cc := p.conns[addr]; cc != nil {
		cc.Close()
		delete(p.conns, addr)
	}
	delete(p.state, addr)
	if p.leader == addr {
		p.leader = ""
	}
}
