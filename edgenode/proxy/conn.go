package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
)

// Connection states, for graceful shutdown: only an idle connection (waiting
// for a request) may be closed by Shutdown; an active one finishes its
// response first.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// deadlineSlack is how stale a connection deadline may get before it is
// moved: deadlines are refreshed about once a second per connection instead
// of twice per request. (The head deadlines use at most a tenth of
// HeadTimeout, Server.slack.)
const deadlineSlack = time.Second

// conn is one client connection and everything reused across its requests.
// What belongs to one request is in rs, which the serve loop replaces
// before each request. Pooled by the Server.
type conn struct {
	s        *Server
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	state    atomic.Int32
	clientIP []byte
	// tls is set for a connection accepted on a TLS listener: its scheme
	// is https (X-Forwarded-Proto).
	tls bool
	// raw is the socket of a plain TCP connection, to wait on without a
	// buffer; nil for TLS.
	raw syscall.RawConn
	// trusted: the peer is in TrustedProxies (its forwarding fields are
	// kept); debugOK: it may ask for X-Edge-Route (DebugHeader).
	trusted, debugOK bool

	rs       reqState // the current request's
	scratch  []byte   // reply bodies are built here
	bodyDone chan error
	bodyMu   sync.Mutex // orders stopBody against sendBody's deadline updates
	bodyStop bool
	// respStarted: the final response head came. Under bodyMu: sendBody
	// arms the response timeout on the upstream connection only before.
	respStarted bool
	linger      bool // the client may still be sending a body nobody read

	// Authentication (auth.go): the connection's reusable state (verifier,
	// buffers), nil until a request to a cell with an auth policy.
	auth *authState

	rdl, wdl  time.Time // current deadlines, to refresh them lazily
	idleBy    time.Time // the next request's first byte is due by then
	headBy    time.Time // the current request's head is due by then
	shortRead bool      // rdl is the short readiness deadline, not the idle one
	rw        readWaiter
	now       time.Time // when the last response was sent: a clock read saved
	whyBuf    []byte    // X-Edge-Route and 502 reasons are built here
	readErr   error
}

// reqState is what belongs to one request. The serve loop replaces it by
// value before each request, keeping only the heads' buffers (emptied), so
// nothing one request decided (its identity, a held body, how it was
// routed, whether the connection stays open) can reach the next. Buffers
// the connection reuses for every request live in conn.
type reqState struct {
	req      request
	resp     response
	ray      [16]byte
	keep     bool // keep the connection after the response
	bodyRead bool // some of the body was consumed
	bodyHeld bool // the body was read whole into auth.held (to hash it) and is sent from there
	// chunksHere is the length of a chunked body that came whole with the
	// head (faultyChunksHere), 0 or less when it did not.
	chunksHere int

	// The identity an authenticated request carries upstream ("" for none).
	identityHeader string // headerEdgeKeyID or headerEdgeSubject
	identity       string

	// How the endpoint was chosen, for X-Edge-Route and 502 reasons.
	cell       *route.Cell
	revision   uint64                   // of the table the request is routed on, for X-Edge-Revision
	skips      [route.NumReasons]uint16 // endpoints passed over, by the gate's reason
	attempts   uint8                    // endpoints the request was sent (or dialled) to in vain
	failed     uint8                    // 1<<attempt of each failed attempt's outcome
	retryAfter *route.Endpoint          // the endpoint whose failure led to a retry, or nil
	retryWhy   attempt                  // how it failed
	routable   int                      // endpoints the gates allowed, counted when the cell has a panic threshold
	panicking  bool                     // too few were: every endpoint was a candidate
}

func (c *conn) attach(nc net.Conn) {
	c.nc = nc
	_, c.tls = nc.(*tls.Conn)
	c.raw = plainSocket(nc, rawConn(nc)) // to wait for a request holding no buffer
	c.state.Store(stateActive)
	c.linger = false
	c.rdl, c.wdl, c.shortRead = time.Time{}, time.Time{}, false
	c.rw.init(c.raw, c.s.cfg.ReadMode)
	c.clientIP = c.clientIP[:0]
	c.trusted = false
	if host, _, err := net.SplitHostPort(nc.RemoteAddr().String()); err == nil {
		c.clientIP = append(c.clientIP, host...)
		c.trusted = c.s.trusts(host)
	}
	c.debugOK = c.s.cfg.DebugHeader == DebugOn || c.s.cfg.DebugHeader == DebugTrusted && c.trusted
}

func (c *conn) serve() {
	defer c.finish()
	defer func() {
		// A bug must cost one connection, not the edge.
		if v := recover(); v != nil {
			c.s.log.Error("panic serving a connection", "panic", v, "stack", string(debug.Stack()))
			c.linger = false
		}
	}()
	// The first request's head, its first byte included, is due within
	// HeadTimeout of the accept; later ones may wait ClientIdleTimeout for
	// their first byte and then have HeadTimeout for the rest (as HAProxy's
	// timeout http-request and http-keep-alive).
	c.now = time.Now()
	c.idleBy = c.now.Add(c.s.cfg.HeadTimeout)
	c.headBy = c.idleBy
	for first := true; ; first = false {
		c.state.Store(stateIdle)
		if c.s.closing.Load() {
			return
		}
		// A new request starts from nothing but the heads' buffers.
		c.rs = reqState{req: request{head: c.rs.req.emptied()}, resp: response{head: c.rs.resp.emptied()}}
		if c.rw.rc != nil && c.br != nil && c.br.Buffered() == 0 {
			// Send the last response and wait for the next request without
			// a speculative read. The short deadline this arms stays while
			// the head is read; only a head slow to come gets its own.
			if c.rw.flushAndWait(c.nc, c.bw, c.now.Add(readWaitSafety)) != nil {
				return
			}
			c.rdl, c.shortRead = c.now.Add(readWaitSafety), true
		} else {
			if c.bw != nil && c.bw.Buffered() > 0 && c.bw.Flush() != nil {
				return
			}
			c.armFor(waitingRequest, c.now)
		}
		if !c.retrying(waitingRequest, c.awaitRequest) {
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed us while idle
		}
		start := time.Now()
		if !first {
			c.headBy = start.Add(c.s.cfg.HeadTimeout)
			if !c.shortRead {
				c.armFor(readingHead, start)
			}
		}
		if !c.retrying(readingHead, func() error { return c.rs.req.readHead(c.br, c.s.cfg.MaxHeaderBytes) }) {
			c.badRequest(c.readErr)
			return
		}
		if err := c.rs.req.parse(&c.s.cfg.HeadLimits); err != nil {
			c.badRequest(err)
			return
		}
		c.rs.req.debug = c.rs.req.debug && c.debugOK
		keep := c.serveRequest(start)
		if c.auth != nil {
			c.auth.held.release()
		}
		if !keep || c.s.closing.Load() {
			return
		}
		c.idleBy = c.now.Add(c.s.cfg.ClientIdleTimeout)
	}
}

// readPhase is what a client read of the serve loop waits for, which sets
// its deadline.
type readPhase uint8

const (
	waitingRequest readPhase = iota // the first byte of a request: until idleBy
	readingHead                     // the rest of its head: until headBy
)

// errHeadTimeout: a request head did not arrive whole within HeadTimeout.
var errHeadTimeout = errors.New("request head timed out")

// retrying runs a client read of the serve loop. A deadline that passed
// before the phase's own (the short readiness one, or while waiting for a
// request, one HeadTimeout away when the idle timeout is later) is moved
// on and the read runs again. On failure the error is in c.readErr.
func (c *conn) retrying(phase readPhase, read func() error) bool {
	for {
		err := read()
		if err == nil {
			return true
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			now := time.Now()
			switch {
			case c.shortRead:
				c.shortRead = false
				c.armFor(phase, now)
				continue
			case phase == waitingRequest && c.buffered() == 0 && now.Before(c.idleBy):
				// A step of the idle wait (HeadTimeout) went by with
				// nothing: the connection is idle. It waits for the rest
				// holding no buffer (awaitRequest).
				c.rdl = time.Time{}
				c.armFor(phase, now)
				c.dropBuffers()
				continue
			case phase == readingHead && now.Before(c.headBy):
				// A stale deadline (deadlineSlack): the head's is later.
				c.rdl = time.Time{}
				c.armFor(phase, now)
				continue
			case phase == readingHead || c.buffered() > 0:
				err = errHeadTimeout
				c.s.metrics.timeout(timeoutHead)
			default:
				c.s.metrics.timeout(timeoutIdle)
			}
		}
		c.readErr = err
		return false
	}
}

// armFor makes sure the read deadline is the phase's, within
// deadlineSlack: headBy while a head is read; while waiting for a request,
// idleBy or HeadTimeout from now if that is sooner (a partial head that
// trickles in is bounded like any other, and an idle connection wakes up
// once per HeadTimeout to move it on).
func (c *conn) armFor(phase readPhase, now time.Time) {
	d := c.headBy
	if phase == waitingRequest {
		if d = now.Add(c.s.cfg.HeadTimeout); c.idleBy.Before(d) {
			d = c.idleBy
		}
	}
	if diff := d.Sub(c.rdl); diff > c.s.slack || diff < -c.s.slack || !now.Before(c.rdl) {
		c.rdl, c.shortRead = d, false
		c.nc.SetReadDeadline(d)
	}
}

// awaitRequest waits for the first byte of a request. Unless the
// connection is TLS (whose own buffers may hold it already), a connection
// without buffers (new, or idle past a head timeout) first parks holding
// none, until the client sends something; only then does it take them from
// the Server's pools. So a connection that only waits costs its goroutine
// and little else (DESIGN.md, "Resources under attack").
func (c *conn) awaitRequest() error {
	if c.br == nil {
		if c.raw != nil {
			if err := awaitBytes(c.raw); err != nil {
				return err
			}
		}
		c.takeBuffers()
	}
	_, err := c.br.Peek(1)
	return err
}

// awaitBytes parks until the socket under rc is readable (data, end of
// stream or an error: the read that follows tells), within its read
// deadline. The readiness test runs inside the wait, after the runtime
// cleared the connection's readiness flag, so no arrival can be missed.
func awaitBytes(rc syscall.RawConn) error {
	return rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	})
}

// buffered is how many bytes of the client's wait in the read buffer.
func (c *conn) buffered() int {
	if c.br == nil {
		return 0
	}
	return c.br.Buffered()
}

// takeBuffers gives the connection its read and write buffers.
func (c *conn) takeBuffers() {
	c.br = c.s.readers.Get().(*bufio.Reader)
	c.br.Reset(c.nc)
	c.bw = c.s.writers.Get().(*bufio.Writer)
	c.bw.Reset(c.nc)
}

// dropBuffers gives the connection's buffers back (the write buffer must
// be flushed, the read buffer empty), with the heads' and a held body's.
func (c *conn) dropBuffers() {
	if c.br != nil {
		c.br.Reset(nil)
		c.s.readers.Put(c.br)
		c.bw.Reset(nil)
		c.s.writers.Put(c.bw)
		c.br, c.bw = nil, nil
	}
	c.rs = reqState{}
	if c.auth != nil {
		c.auth.held.b = nil
	}
}

// closeIfIdle closes the connection if it waits for a request; called by Shutdown.
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.nc.Close()
	}
}

func (c *conn) finish() {
	c.state.Store(stateClosed)
	if c.bw != nil && c.bw.Buffered() > 0 {
		c.bw.Flush() // the last response, left for the next wait to send
	}
	if c.linger {
		c.lingerClose()
	}
	c.nc.Close()
	c.s.untrack(c)
	c.nc, c.raw = nil, nil
	if c.auth != nil {
		c.auth.held.release()
	}
	c.dropBuffers()
	c.s.conns.Put(c)
}

// armRead makes sure the read deadline is about ClientIdleTimeout away, for
// a request body's reads.
func (c *conn) armRead(now time.Time) {
	if d := now.Add(c.s.cfg.ClientIdleTimeout); d.Sub(c.rdl) > deadlineSlack {
		c.rdl, c.shortRead = d, false
		c.nc.SetReadDeadline(d)
	}
}

// armWrite makes sure the write deadline is about WriteTimeout away.
func (c *conn) armWrite(now time.Time) {
	if d := now.Add(c.s.cfg.WriteTimeout); d.Sub(c.wdl) > deadlineSlack {
		c.wdl = d
		c.nc.SetWriteDeadline(d)
	}
}

// badRequest answers a head that could not be read; the connection closes.
func (c *conn) badRequest(err error) {
	var status int
	var msg string
	switch {
	case errors.Is(err, errHeaderTooLarge):
		status, msg = 431, "request head too large"
	case errors.Is(err, errURITooLong):
		status, msg = 414, "request target too long"
	case errors.Is(err, errMalformed):
		status, msg = 400, "malformed request"
	case errors.Is(err, errUnsupportedTE):
		status, msg = 501, "unsupported transfer-encoding"
	case errors.Is(err, errUnsupportedVers):
		status, msg = 505, "unsupported HTTP version"
	case errors.Is(err, errHeadTimeout):
		status, msg = 408, "request head timed out"
	default:
		return // the client went away or timed out: nobody to answer
	}
	if he := (*headError)(nil); errors.As(err, &he) {
		msg = he.msg
	}
	c.newRay()
	c.rs.req.keepAlive = false
	c.rs.req.hasKey = false
	c.reply(status, msg)
}

// Lingering close: a client still sending a body when the edge closes the
// connection would get a reset that destroys the response it has not read
// yet. So the edge half-closes, then drains what the client sends for a
// bounded time and amount before closing for good.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 64 << 20
)

func (c *conn) lingerClose() {
	if c.bw.Buffered() > 0 {
		c.bw.Flush()
	}
	closeWrite(c.nc)
	c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.nc, lingerBytes)
}

// discardBody consumes a request body the edge will not forward, when it is
// small and already here; false means the connection must close instead.
func (c *conn) discardBody() bool {
	r := &c.rs.req
	switch {
	case c.rs.bodyHeld:
		return true // read whole already
	case c.rs.bodyRead:
		return false
	case !r.hasBody():
		return true
	case !r.chunked && r.contentLength <= int64(c.br.Buffered()):
		c.br.Discard(int(r.contentLength))
		return true
	}
	c.linger = true
	return false
}
