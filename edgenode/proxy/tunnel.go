package proxy

import (
	"bufio"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
)

// A tunnel is an upgraded (websocket) connection: after the 101, bytes
// flow both ways until either side closes. The edge still bounds it:
//   - a tunnel that carries no byte either way for TunnelIdleTimeout is
//     closed (Envoy's stream_idle_timeout), and a peer that stops reading
//     is cut off after WriteTimeout;
//   - a tunnel opened with an API key is closed as soon as the edge applies
//     a routing table in which that key is revoked, gone, or no longer
//     allowed for the tunnel's cell (Revalidate), as a new request with the
//     key would be refused.

// tunnel is one open tunnel, as the Server tracks it for Revalidate.
type tunnel struct {
	client, upstream net.Conn
	keyID, cell      string // keyID "" when not opened with an API key
	last             atomic.Int64
	revoked          atomic.Bool
}

func (tn *tunnel) close() {
	tn.client.Close()
	tn.upstream.Close()
}

// tunnel relays a 101 Switching Protocols response and then bytes both ways
// until either side closes, the tunnel idles out or its key is revoked.
// The client connection is not reused.
func (c *conn) tunnel(uc *upConn, ep *route.Endpoint) {
	c.rs.keep = false
	c.writeResponseHead(ep, bodyNone, false)
	if err := c.bw.Flush(); err != nil {
		uc.close()
		return
	}
	tn := &tunnel{client: c.nc, upstream: uc.nc}
	if c.rs.identityHeader == headerEdgeKeyID {
		tn.keyID, tn.cell = c.rs.identity, c.rs.cell.ID()
	}
	now := time.Now()
	tn.last.Store(now.UnixNano())
	c.nc.SetDeadline(now.Add(c.s.cfg.TunnelIdleTimeout))
	uc.nc.SetDeadline(now.Add(c.s.cfg.TunnelIdleTimeout))
	if !c.s.openTunnel(tn, c.s.cfg.Table.Load()) {
		tn.close() // revoked between the check and now
	}
	defer c.s.closeTunnel(tn)
	idled := make(chan bool, 1)
	go func() {
		idled <- c.pipe(tn, uc.nc, c.br, c.nc) // buffered bytes first, then the raw connection
	}()
	idle := c.pipe(tn, c.nc, uc.br, uc.nc)
	if <-idled || idle {
		c.s.metrics.timeout(timeoutTunnel)
		c.s.log.Debug("tunnel closed after idling", "timeout", c.s.cfg.TunnelIdleTimeout)
	}
	if tn.revoked.Load() {
		c.s.log.Info("tunnel closed: its key was revoked or is no longer allowed for the cell", "key", tn.keyID, "cell", tn.cell)
	}
	uc.close()
}

// pipe copies one direction of tn, from src (read through its buffer br)
// to dst, until src ends (then dst's write side is closed) or fails, or
// the tunnel idles out (true; then both sides are closed).
func (c *conn) pipe(tn *tunnel, dst net.Conn, br *bufio.Reader, src net.Conn) bool {
	buf := c.s.bufs.Get().(*[copyBufSize]byte)
	defer c.s.bufs.Put(buf)
	timeout := c.s.cfg.TunnelIdleTimeout
	for {
		n, err := br.Read(buf[:])
		if n > 0 {
			now := time.Now()
			tn.last.Store(now.UnixNano())
			dst.SetWriteDeadline(now.Add(c.s.cfg.WriteTimeout))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				tn.close()
				return false
			}
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			// This side was quiet that long; the tunnel is idle only if
			// the other one was too.
			last := time.Unix(0, tn.last.Load())
			if time.Since(last) < timeout {
				src.SetReadDeadline(last.Add(timeout))
				continue
			}
			tn.close()
			return true
		case n == 0 && errors.Is(err, net.ErrClosed):
			return false // closed by the other direction or Revalidate
		}
		closeWrite(dst)
		return false
	}
}

// openTunnel tracks tn for Revalidate, reporting false if t already
// refuses its key.
func (s *Server) openTunnel(tn *tunnel, t *route.Table) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tunnels == nil {
		s.tunnels = map[*tunnel]struct{}{}
	}
	s.tunnels[tn] = struct{}{}
	if !tunnelAllowed(tn, t) {
		tn.revoked.Store(true)
		return false
	}
	return true
}

func (s *Server) closeTunnel(tn *tunnel) {
	s.mu.Lock()
	delete(s.tunnels, tn)
	s.mu.Unlock()
}

// Revalidate closes every tunnel whose API key table t revokes, no longer
// holds or no longer allows for the tunnel's cell. The edge calls it after
// each routing table it applies; it returns how many it closed.
func (s *Server) Revalidate(t *route.Table) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for tn := range s.tunnels {
		if !tunnelAllowed(tn, t) && !tn.revoked.Swap(true) {
			tn.close()
			n++
		}
	}
	return n
}

func tunnelAllowed(tn *tunnel, t *route.Table) bool {
	if tn.keyID == "" || t == nil {
		return true
	}
	k := t.Key(tn.keyID)
	return k != nil && !k.Revoked && k.Allows(tn.cell)
}
