package simnet

import (
	"context"
	"errors"
	"fmt"
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
	// partitioned are the regions cut off from every other one.
	partitioned map[string]bool
	// open are the delayed connections not yet closed, with their two
	// regions, so that Partition can cut them.
	open map[*delayConn][2]string
}

// ErrPartitioned is matched (errors.Is) by the errors of dials refused and
// connections cut by a partition (see Network.Partition).
var ErrPartitioned = errors.New("no route between regions")

// NewNetwork returns a network with matrix m (nil: no delays until SetMatrix).
func NewNetwork(m *Matrix) *Network {
	n := &Network{
		regions:     map[string]string{},
		dialed:      map[string]struct{}{},
		partitioned: map[string]bool{},
		open:        map[*delayConn][2]string{},
	}
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
		if err := n.cutErr(from, to); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: staticAddr{network, addr}, Err: err}
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
		// Checked again under the lock that Partition takes: a partition
		// made during the handshake must not miss this connection.
		if err := n.cutErrLocked(from, to); err != nil {
			n.mu.Unlock()
			conn.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Addr: conn.RemoteAddr(), Err: err}
		}
		var dc *delayConn
		dc = newDelayConn(conn, n.delayFunc(from, to), n.delayFunc(to, from), func() {
			n.mu.Lock()
			delete(n.dialed, local)
			delete(n.open, dc)
			n.mu.Unlock()
		})
		n.dialed[local] = struct{}{}
		n.open[dc] = [2]string{from, to}
		n.mu.Unlock()
		return dc, nil
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
	for {
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
		l.n.mu.Lock()
		if l.n.cutErrLocked(l.region, peer) != nil {
			// As if the connection never got through: the peer sees it end.
			l.n.mu.Unlock()
			conn.Close()
			continue
		}
		var dc *delayConn
		dc = newDelayConn(conn, l.n.delayFunc(l.region, peer), l.n.delayFunc(peer, l.region), func() {
			l.n.mu.Lock()
			delete(l.n.open, dc)
			l.n.mu.Unlock()
		})
		l.n.open[dc] = [2]string{l.region, peer}
		l.n.mu.Unlock()
		return dc, nil
	}
}

// Partition cuts region off from every other region, until Heal: dials
// between region and another region fail at once with an error matching
// ErrPartitioned, and the delayed connections open between them are cut:
// what is in flight is dropped, their Reads and Writes fail at once with
// that error, and the peer sees the connection end. (A real partition would
// rather leave them stalled until some timeout; closing gets every client
// onto its retry path at once, which is what tests want to see.) Traffic
// within a region, and with unregistered addresses, is unaffected. It
// returns how many connections it cut.
func (n *Network) Partition(region string) int {
	n.mu.Lock()
	n.partitioned[region] = true
	var cut []*delayConn
	for c, pair := range n.open {
		if pair[0] != pair[1] && (pair[0] == region || pair[1] == region) {
			cut = append(cut, c)
		}
	}
	n.mu.Unlock()
	err := fmt.Errorf("simnet: region %s is partitioned: %w", region, ErrPartitioned)
	for _, c := range cut {
		c.cut(err)
	}
	return len(cut)
}

// Heal ends every partition: new dials between regions succeed again.
// Connections cut stay closed; their owners redial.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.partitioned)
}

// Partitioned are the regions cut off by Partition, in no order.
func (n *Network) Partitioned() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]string, 0, len(n.partitioned))
	for r := range n.partitioned {
		out = append(out, r)
	}
	return out
}

// cutErr is why traffic between regions a and b cannot flow, or nil.
func (n *Network) cutErr(a, b string) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cutErrLocked(a, b)
}

func (n *Network) cutErrLocked(a, b string) error {
	if a == b {
		return nil
	}
	for _, r := range []string{a, b} {
		if n.partitioned[r] {
			return fmt.Errorf("simnet: region %s is partitioned: %w", r, ErrPartitioned)
		}
	}
	return nil
}

// staticAddr is a net.Addr for an address that was never dialed.
type staticAddr struct{ network, addr string }

func (a staticAddr) Network() string { return a.network }
func (a staticAddr) String() string  { return a.addr }

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
