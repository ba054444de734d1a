package simnet

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc is the dialer shape edgecell's configs take (net.Dialer.DialContext).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Network knows which region each address belongs to and delays connections
// between regions by its Matrix. Its methods are safe for concurrent use; the
// dialers and listeners it returns read the current matrix for every chunk
// of data, so SetMatrix applies to connections already open.
type Network struct {
	matrix atomic.Pointer[Matrix]

	mu      sync.RWMutex
	regions map[string]string   // "host:port" or "host" -> region
	dialed  map[string]struct{} // local addresses of connections our dialers delay
}

// NewNetwork returns a network with matrix m (nil: no delays until SetMatrix).
func NewNetwork(m *Matrix) *Network {
	n := &Network{regions: map[string]string{}, dialed: map[string]struct{}{}}
	n.SetMatrix(m)
	return n
}

// SetMatrix replaces the matrix, for new and open connections alike. Nil
// removes every delay.
func (n *Network) SetMatrix(m *Matrix) {
	if m == nil {
		m = &Matrix{}
	}
	n.matrix.Store(m)
}

// Matrix is the current matrix.
func (n *Network) Matrix() *Matrix { return n.matrix.Load() }

// Register records that addr belongs to region. addr is either a "host:port"
// a service listens on (matched exactly against the address dialed: register
// "127.0.0.1:7101", not "localhost:7101", if that is what peers dial), or a
// bare host, which stands for every port on it (for Listener, whose peers
// connect from ephemeral ports). Registering an address again moves it.
func (n *Network) Register(addr, region string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.regions[addr] = region
}

// Region returns the region addr was registered in: the "host:port" itself,
// or else its host.
func (n *Network) Region(addr string) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if r, ok := n.regions[addr]; ok {
		return r, true
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		r, ok := n.regions[host]
		return r, ok
	}
	return "", false
}

// Dialer returns a dialer for a node in region from. It dials with base (nil:
// a net.Dialer) and, when the target address is registered in another region,
// waits one round trip (the handshake) and returns a connection whose traffic
// is delayed both ways (see the package doc). Connections to the same region
// or to unregistered addresses are returned as base made them.
func (n *Network) Dialer(from string, base DialFunc) DialFunc {
	if base == nil {
		base = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		to, ok := n.Region(addr)
		if !ok || to == from {
			return base(ctx, network, addr)
		}
		conn, err := base(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		m := n.Matrix()
		if err := sleep(ctx, m.Delay(from, to)+m.Delay(to, from)); err != nil {
			conn.Close()
			return nil, err
		}
		local := conn.LocalAddr().String()
		n.mu.Lock()
		n.dialed[local] = struct{}{}
		n.mu.Unlock()
		return newDelayConn(conn, n.delayFunc(from, to), n.delayFunc(to, from), func() {
			n.mu.Lock()
			delete(n.dialed, local)
			n.mu.Unlock()
		}), nil
	}
}

func (n *Network) delayFunc(from, to string) func() time.Duration {
	return func() time.Duration { return n.Matrix().Delay(from, to) }
}

// Listener wraps ln, on which a node of region listens: an accepted
// connection whose remote address (or its host) is registered in another
// region is delayed both ways, unless one of this Network's dialers made it
// and delays it already. Closing the returned listener closes ln.
func (n *Network) Listener(region string, ln net.Listener) net.Listener {
	return &listener{Listener: ln, n: n, region: region}
}

type listener struct {
	net.Listener
	n      *Network
	region string
}

func (l *listener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	remote := conn.RemoteAddr().String()
	l.n.mu.RLock()
	_, ours := l.n.dialed[remote]
	l.n.mu.RUnlock()
	peer, ok := l.n.Region(remote)
	if ours || !ok || peer == l.region {
		return conn, nil
	}
	return newDelayConn(conn, l.n.delayFunc(l.region, peer), l.n.delayFunc(peer, l.region), nil), nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
