package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
)

// probeAfter is how long a pooled connection may idle before it is checked
// for a close by the upstream before reuse. Busy connections are not
// probed (except for requests that could not be resent); one that idled may
// have been closed by the upstream's own idle timeout.
const probeAfter = time.Second

// upConn is one connection to an upstream with its buffers.
type upConn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer // writes through sent
	sent      sentCounter
	pool      *pool
	idleSince time.Time
	reused    bool
	rw        readWaiter
	probe     syscall.RawConn // the socket under nc, for alive; nil if hidden
	deadline  bool            // a read deadline may be armed
}

func (uc *upConn) close() { uc.nc.Close() }

// sentCounter counts the bytes written to a connection, so that a failed
// exchange knows whether any of the request left the edge: bufio.Writer
// may have flushed part of a large head before the write that failed.
type sentCounter struct {
	nc net.Conn
	n  int64 // since the current exchange began
}

func (w *sentCounter) Write(p []byte) (int, error) {
	n, err := w.nc.Write(p)
	w.n += int64(n)
	return n, err
}

// clearDeadline removes the readiness deadline left armed by the last
// exchange (left there when the whole response came in the first read).
func (uc *upConn) clearDeadline() {
	if uc.deadline {
		uc.nc.SetReadDeadline(time.Time{})
		uc.deadline = false
	}
}

// pool holds the idle connections to one upstream address, most recently
// used first (so a shrinking load lets the oldest ones expire).
type pool struct {
	key      string
	mu       sync.Mutex
	idle     []*upConn
	lastUsed time.Time
	removed  bool // dropped from the map: connections coming back are closed
}

// upstreams dials and pools upstream connections. The pool map is copied on
// write, so finding a pool takes no lock.
type upstreams struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConfig   *tls.Config
	dialTimeout time.Duration
	maxIdle     int
	idleTimeout time.Duration
	bufSize     int
	readMode    ReadMode

	mu    sync.Mutex // serialises pool creation
	pools atomic.Pointer[map[string]*pool]
}

func (u *upstreams) pool(ep *route.Endpoint) *pool {
	if m := u.pools.Load(); m != nil {
		if p := (*m)[ep.PoolKey]; p != nil {
			return p
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.pools.Load()
	if old != nil {
		if p := (*old)[ep.PoolKey]; p != nil {
			return p
		}
	}
	m := make(map[string]*pool, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	p := &pool{key: ep.PoolKey}
	m[ep.PoolKey] = p
	u.pools.Store(&m)
	return p
}

func lenOf(m *map[string]*pool) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// get returns an idle connection to ep (reused) or dials a new one; with
// fresh it always dials. A dial error means nothing was sent: the caller may
// try another endpoint. With probe, a reused connection is always checked
// for a close by the upstream (the caller's request could not be resent if
// the connection turned out closed); otherwise only one idle for longer
// than probeAfter is.
func (u *upstreams) get(ep *route.Endpoint, now time.Time, probe, fresh bool) (*upConn, error) {
	p := u.pool(ep)
	for !fresh {
		p.mu.Lock()
		p.lastUsed = now
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		idle := now.Sub(uc.idleSince)
		if idle > u.idleTimeout || ((probe || idle > probeAfter) && !alive(uc)) {
			uc.close()
			continue
		}
		uc.reused = true
		return uc, nil
	}
	return u.dialConn(ep, p)
}

// alive reports whether an idle connection is still open: a peek at the
// socket that would block means nothing (no close, no stray bytes) arrived.
// A deadline cannot serve here: once it has passed, reads fail without
// looking at the socket. Connections that hide their socket are assumed alive.
func alive(uc *upConn) bool {
	if uc.br.Buffered() > 0 {
		return false // stray bytes: the connection is out of step
	}
	rc := uc.probe
	if rc == nil {
		return true
	}
	uc.clearDeadline() // an expired deadline would fail the probe unlooked
	var ok bool
	err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && ok
}

func (u *upstreams) dialConn(ep *route.Endpoint, p *pool) (*upConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), u.dialTimeout)
	defer cancel()
	nc, err := u.dial(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, err
	}
	if ep.TLS {
		cfg := ep.UpstreamTLS // the cell's CA and server name, shared read-only
		if cfg == nil {
			cfg = u.tlsConfig.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName = ep.ServerName
			}
			cfg.NextProtos = []string{"http/1.1"}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	uc := &upConn{
		nc:   nc,
		br:   bufio.NewReaderSize(nc, u.bufSize),
		sent: sentCounter{nc: nc},
		pool: p,
	}
	uc.bw = bufio.NewWriterSize(&uc.sent, u.bufSize)
	uc.probe = rawConn(nc)
	uc.rw.init(plainSocket(nc, uc.probe), u.readMode)
	return uc, nil
}

// put returns a connection whose last exchange completed cleanly.
func (u *upstreams) put(uc *upConn, now time.Time) {
	uc.idleSince = now
	p := uc.pool
	p.mu.Lock()
	if len(p.idle) >= u.maxIdle || p.removed {
		p.mu.Unlock()
		uc.close()
		return
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
}

// sweep closes connections idle longer than the idle timeout and forgets
// pools unused that long (endpoints that left the table).
func (u *upstreams) sweep(now time.Time) {
	m := u.pools.Load()
	if m == nil {
		return
	}
	var unused []string
	for key, p := range *m {
		p.mu.Lock()
		keep := p.idle[:0]
		for _, uc := range p.idle {
			if now.Sub(uc.idleSince) > u.idleTimeout {
				uc.close()
			} else {
				keep = append(keep, uc)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		if len(keep) == 0 && now.Sub(p.lastUsed) > u.idleTimeout {
			p.removed = true
			unused = append(unused, key)
		}
		p.mu.Unlock()
	}
	if len(unused) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	cur := *u.pools.Load()
	nm := make(map[string]*pool, len(cur))
	for k, v := range cur {
		nm[k] = v
	}
	for _, k := range unused {
		delete(nm, k)
	}
	u.pools.Store(&nm)
}

// closeIdle closes every idle connection.
func (u *upstreams) closeIdle() {
	m := u.pools.Load()
	if m == nil {
		return
	}
	for _, p := range *m {
		p.mu.Lock()
		for _, uc := range p.idle {
			uc.close()
		}
		clear(p.idle)
		p.idle = p.idle[:0]
		p.mu.Unlock()
	}
}

// idleCount is the number of pooled idle connections, for metrics.
func (u *upstreams) idleCount() int {
	m := u.pools.Load()
	if m == nil {
		return 0
	}
	n := 0
	for _, p := range *m {
		p.mu.Lock()
		n += len(p.idle)
		p.mu.Unlock()
	}
	return n
}
