package proxy

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// maxAttempts bounds the endpoints one request is sent to: the first and at
// most one retry on another endpoint (Envoy's num_retries defaults to 1), so
// a fleet-wide outage does not multiply the load on what is left. Endpoints
// skipped by their gate are not attempts; a resend on a fresh connection
// after a stale pooled one is part of the same attempt.
const maxAttempts = 2

// attempt is how one try at an endpoint ended.
type attempt uint8

const (
	// answered: the client has its answer (possibly a 502 or 504).
	answered attempt = iota
	// unreachable: no connection could be made; nothing left the edge.
	unreachable
	// noResponse: the connection failed before the upstream answered
	// anything, and sending the request elsewhere is safe (see
	// failedBeforeAnswer).
	noResponse
	// stale: a reused connection failed the same way; the request goes
	// again to the same endpoint on a fresh connection. Never leaves forward.
	stale
)

// String is the word X-Edge-Route and 502 reasons use for a failed attempt.
func (a attempt) String() string {
	switch a {
	case unreachable:
		return "unreachable"
	case noResponse:
		return "failed before responding"
	}
	return "answered"
}

// serveRequest routes and proxies the request just read and reports
// whether the connection stays open.
func (c *conn) serveRequest(start time.Time) bool {
	c.newRay()
	r := &c.rs.req
	if !r.hasKey {
		return c.reply(400, "missing X-Routing-Key header")
	}
	if r.chunked && c.faultyChunksHere() {
		// Refused before anything of the body goes anywhere (one that
		// turns bad later is cut off at the fault by sendBody).
		c.linger = true
		r.keepAlive = false
		return c.reply(400, "malformed chunked body")
	}
	t := c.s.cfg.Table.Load() // the whole request uses this one table
	if t == nil || t.Revision() == 0 {
		return c.reply(503, "edge has no routing state yet")
	}
	cell := t.Lookup(r.routingKey)
	if cell == nil {
		return c.reply(404, "unknown routing key")
	}
	if r.upgrade == nil && r.upgradeAsked != nil && len(cell.Upgrades()) > 0 {
		r.upgrade = cellUpgrade(r.upgradeAsked, cell.Upgrades())
	}
	// A cell with an auth policy lets only authenticated requests through,
	// checked on the request as received, before anything is rewritten.
	if ap := &cell.Policy().Auth; ap.Mode != pb.AuthMode_AUTH_MODE_UNSPECIFIED && !c.authenticate(t, cell, ap, start) {
		return c.rs.keep
	}
	if cell.Len() == 0 {
		return c.reply(502, "cell has no endpoints")
	}
	// Endpoints whose gate says no (breaker, health, local trip) are
	// skipped, unless so few are left that the cell panics; the candidate
	// order already fails over region by region.
	now := start.UnixNano()
	c.rs.cell, c.rs.revision = cell, t.Revision()
	c.rs.routable, c.rs.panicking = cell.Panic(now)
	if c.rs.panicking && c.s.metrics != nil {
		c.s.metrics.panics.Add(1)
	}
	it := cell.Candidates(rand.Uint64())
	for ep := it.Next(); ep != nil; ep = it.Next() {
		if !c.rs.panicking {
			if why := ep.Gate.Check(now); why != route.Allowed {
				c.rs.skips[why]++
				continue
			}
		}
		if c.rs.attempts > 0 && c.s.metrics != nil {
			c.s.metrics.retries.Add(1)
		}
		a := c.forward(ep, start)
		if a == answered {
			return c.rs.keep
		}
		c.rs.failed |= 1 << a
		if c.rs.attempts++; c.rs.attempts == maxAttempts {
			break
		}
		c.rs.retryAfter, c.rs.retryWhy = ep, a
	}
	return c.replyNoEndpoint()
}

// faultyChunksHere scans what of a chunked body came with the head,
// once: it reports whether that is already malformed, and notes in
// c.rs.chunksHere the body's length when all of it is here (for
// writeBodyWithHead; the buffer holds still until then).
func (c *conn) faultyChunksHere() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	n, err := scanChunked(b, nil)
	c.rs.chunksHere = n
	return len(b) > 0 && err != nil
}

// forward proxies the request to ep. Unless it returns answered, the client
// has no answer yet, the request may go to another endpoint and ep's
// failure was counted on its gate.
func (c *conn) forward(ep *route.Endpoint, start time.Time) attempt {
	// A pooled connection is probed before a request that could not be
	// resent if the connection turned out closed.
	probe := c.rs.req.hasBody() || !c.rs.req.idempotent()
	fresh := false
	for {
		uc, err := c.s.ups.get(ep, start, probe, fresh)
		if err != nil {
			if c.s.metrics != nil {
				c.s.metrics.dialErrors.Add(1)
			}
			// Trip at once on this edge: the next request goes elsewhere
			// without waiting for the coordinators.
			if ep.Gate.ConnectFailed(time.Now().UnixNano()) {
				c.s.log.Warn("endpoint tripped locally after connection failures", "endpoint", ep.ID, "addr", ep.Addr, "err", err)
			}
			ep.Gate.Record(route.ConnectError)
			c.s.log.Debug("endpoint unreachable", "endpoint", ep.ID, "addr", ep.Addr, "err", err)
			return unreachable
		}
		ep.Gate.ConnectSucceeded()
		a := c.exchange(uc, ep, start)
		if a != stale {
			return a
		}
		// A pooled connection the upstream had closed: once more on a new
		// one, which cannot be stale, so this loops at most once.
		if c.s.metrics != nil {
			c.s.metrics.staleRetries.Add(1)
		}
		fresh = true
	}
}

// failedBeforeAnswer decides what becomes of a request whose connection to
// ep failed before the upstream answered anything (uc is closed), following
// net/http's shouldRetryRequest. The request may go again only if that
// cannot make an upstream act on it twice: nothing of it was written (the
// write failed), or its method is idempotent; and in both cases none of its
// body was consumed from the client, which could not be replayed. On a
// reused connection the likely cause is the upstream closing it while idle,
// so the request goes again to ep on a fresh connection (stale); on a fresh
// one the upstream hung up on this very request, so it may go to another
// endpoint (noResponse), within the request's retry budget. Otherwise the
// client gets 502 with msg and the request is never resent.
func (c *conn) failedBeforeAnswer(uc *upConn, ep *route.Endpoint, msg string, err error) attempt {
	safe := !c.rs.bodyRead && (uc.sent.n == 0 || c.rs.req.idempotent())
	c.s.log.Debug(msg, "endpoint", ep.ID, "reused", uc.reused, "sent", uc.sent.n, "resend", safe, "err", err)
	if safe && uc.reused {
		return stale
	}
	ep.Gate.Record(route.ConnectError)
	if safe {
		return noResponse
	}
	c.rs.keep = c.reply(502, msg)
	return answered
}

// exchange sends the request on uc and relays the response. Unless it
// returns answered, the client has no answer yet (see failedBeforeAnswer).
func (c *conn) exchange(uc *upConn, ep *route.Endpoint, start time.Time) attempt {
	streaming, waited, err := c.sendRequest(uc, ep, start)
	if err != nil {
		uc.close()
		return c.failedBeforeAnswer(uc, ep, "upstream connection failed", err)
	}
	if a, final := c.awaitResponse(uc, ep, start, streaming, waited); !final {
		return a
	}
	now := c.recordAnswer(ep, start)
	if c.rs.resp.status == 101 {
		c.switchProtocols(uc, ep, streaming)
	} else {
		c.relayResponse(uc, ep, streaming, now)
	}
	return answered
}

// sendRequest writes the request head to uc, with the body when it can go
// in the same write, and sends it. Unless the body still has to stream,
// it also waits for the answer without a speculative read (waited: the
// short readiness deadline is armed on uc). A body sent with the head is
// consumed from the client only once that write succeeded; a streaming
// one then starts on its own goroutine. An error means the write failed
// and nothing of the body was consumed.
func (c *conn) sendRequest(uc *upConn, ep *route.Endpoint, start time.Time) (streaming, waited bool, err error) {
	uc.sent.n = 0
	c.writeRequestHead(uc.bw, ep)
	small, streaming := c.writeBodyWithHead(uc.bw)
	waited = uc.rw.rc != nil && !streaming
	if waited {
		err = uc.rw.flushAndWait(uc.nc, uc.bw, start.Add(readWaitSafety))
		uc.deadline = true
	} else {
		err = uc.bw.Flush()
	}
	if err != nil {
		return false, false, err
	}
	if small > 0 {
		c.br.Discard(small)
		c.rs.bodyRead = true
	}
	if streaming {
		uc.clearDeadline() // any an earlier exchange left; sendBody arms the response timeout
		c.startBody(uc)
	}
	return streaming, waited, nil
}

// writeBodyWithHead writes the request body to w after the head when it
// can leave in the same write: a held body that fits the buffer, or one
// wholly in the client's buffer already (small is its length, for the
// caller to consume once the write succeeded). Otherwise a body streams:
// sendBody sends it.
func (c *conn) writeBodyWithHead(w *bufio.Writer) (small int, streaming bool) {
	r := &c.rs.req
	switch {
	case !r.hasBody():
		return 0, false
	case c.rs.bodyHeld && len(c.auth.held.b) <= bufSize:
		// A held body stays held: it can be sent again.
		w.Write(c.auth.held.b)
		return 0, false
	case c.rs.bodyHeld:
		return 0, true
	case !r.chunked && r.contentLength <= int64(c.br.Buffered()):
		// The whole body is here: it leaves with the head in one write.
		b, _ := c.br.Peek(int(r.contentLength))
		w.Write(b)
		return len(b), false
	case r.chunked && c.rs.chunksHere > 0:
		// A chunked body wholly here (and so well-formed: serveRequest
		// refused it otherwise) leaves with the head, re-chunked. One not
		// all here streams: sendBody stops at any fault further on, before
		// any byte past it.
		b, _ := c.br.Peek(c.rs.chunksHere)
		scanChunked(b, w)
		return len(b), false
	}
	return 0, true
}

// startBody starts sendBody for a body that streams. Unless the body is
// held (and so can be sent again), it is read from the client from now on:
// it counts as consumed (bodyRead), and a client waiting for 100 Continue
// gets it first.
func (c *conn) startBody(uc *upConn) {
	if !c.rs.bodyHeld {
		if c.rs.req.expect100 && c.br.Buffered() == 0 {
			c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			c.bw.Flush()
		}
		c.rs.bodyRead = true
	}
	c.respStarted = false
	go c.sendBody(uc)
}

// responseStarted tells a streaming sendBody that the final response head
// came, so that finishing the body no longer arms the response timeout
// (the response body is read at the upstream's pace).
func (c *conn) responseStarted() {
	c.bodyMu.Lock()
	c.respStarted = true
	c.bodyMu.Unlock()
}

// awaitResponse reads the response head into c.rs.resp, relaying any 1xx
// before it, and reports whether the final one (a status of 200 or more,
// or 101) came. If not, uc was closed, a streaming body stopped, and the
// attempt ended as returned.
func (c *conn) awaitResponse(uc *upConn, ep *route.Endpoint, start time.Time, streaming, waited bool) (attempt, bool) {
	resp := &c.rs.resp
	shortDL := waited // the readiness deadline is armed, not the response timeout
	if !waited {
		c.armResponseTimeout(uc, start, streaming) // also replaces any deadline an earlier exchange left
	}
	informed := false // a 1xx came: the upstream is acting on the request
	for {
		resp.reset()
		err := resp.readHead(uc.br, c.s.cfg.MaxHeaderBytes)
		if err != nil && shortDL && errors.Is(err, os.ErrDeadlineExceeded) {
			// Only the readiness deadline: the upstream takes its time.
			c.armResponseTimeout(uc, start, streaming)
			shortDL = false
			err = resp.readHead(uc.br, c.s.cfg.MaxHeaderBytes)
		}
		if err == nil {
			err = resp.parse(c.s.cfg.MaxConnectionTokens)
		}
		if err != nil {
			uc.close()
			switch berr := c.waitBody(streaming); {
			case errors.Is(berr, errBadChunk):
				// sendBody cut the upstream off at a malformed chunk: the
				// client's fault, not the endpoint's.
				c.rs.req.keepAlive = false
				c.rs.keep = c.reply(400, "malformed chunked body")
				return answered, false
			case errors.Is(berr, errClientGone):
				c.s.log.Debug("client went away while sending its body", "endpoint", ep.ID)
				c.rs.keep = false
				return answered, false
			}
			return c.noResponseHead(uc, ep, err, informed), false
		}
		if resp.status >= 200 || resp.status == 101 {
			if streaming {
				c.responseStarted()
			}
			return answered, true
		}
		informed = true
		// 1xx: an HTTP/1.0 client does not understand it.
		if c.rs.req.minor >= 1 && c.writeInformational() != nil {
			uc.close()
			c.waitBody(streaming)
			c.rs.keep = false
			return answered, false
		}
	}
}

// armResponseTimeout bounds the wait for the response head with
// ResponseTimeout from start, replacing the readiness deadline or one an
// earlier exchange left. A streaming request's wait is bounded only once
// its body was sent whole (sendBody arms it then): the upload may
// legitimately be slow.
func (c *conn) armResponseTimeout(uc *upConn, start time.Time, streaming bool) {
	if streaming {
		return
	}
	uc.nc.SetReadDeadline(start.Add(c.s.cfg.ResponseTimeout))
	uc.deadline = true
}

// noResponseHead decides what becomes of a request whose response head
// could not be read (uc is closed, no body streams any more): after the
// response timeout, 504; when nothing at all came, what failedBeforeAnswer
// says; when a head was cut short (or followed a 1xx), 502.
func (c *conn) noResponseHead(uc *upConn, ep *route.Endpoint, err error, informed bool) attempt {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Never retried: the upstream has the request and may act on it.
		c.s.log.Debug("upstream response timed out", "endpoint", ep.ID, "timeout", c.s.cfg.ResponseTimeout)
		ep.Gate.Record(route.Timeout)
		c.rs.keep = c.reply(504, "upstream timed out")
		return answered
	}
	if len(c.rs.resp.buf) == 0 && !informed {
		return c.failedBeforeAnswer(uc, ep, "upstream failed before responding", err)
	}
	c.s.log.Debug("upstream response cut short", "endpoint", ep.ID, "err", err)
	ep.Gate.Record(route.ConnectError)
	c.rs.keep = c.reply(502, "upstream failed before responding")
	return answered
}

// recordAnswer counts the final response head on ep's gate, a 5xx against
// the endpoint and anything else for it, and observes the upstream's time.
// It returns the clock read, which also dates the response.
func (c *conn) recordAnswer(ep *route.Endpoint, start time.Time) time.Time {
	if c.rs.resp.status >= 500 {
		ep.Gate.Record(route.Status5xx)
	} else {
		ep.Gate.Record(route.Success)
	}
	now := time.Now()
	c.now = now
	if c.s.metrics != nil {
		c.s.metrics.upstreamTime.Observe(now.Sub(start).Seconds())
	}
	return now
}

// switchProtocols relays a 101 and tunnels the connection when the client
// asked to upgrade (and sent no body still streaming); otherwise the
// client gets 502.
func (c *conn) switchProtocols(uc *upConn, ep *route.Endpoint, streaming bool) {
	uc.clearDeadline()
	if c.rs.req.upgrade == nil || streaming {
		uc.close()
		c.waitBody(streaming)
		c.rs.keep = c.reply(502, "upstream switched protocols unasked")
		return
	}
	c.tunnel(uc, ep)
}

// relayResponse relays the final response head and its body to the
// client, returns uc to the pool if the exchange left it in step, and sets
// c.rs.keep.
func (c *conn) relayResponse(uc *upConn, ep *route.Endpoint, streaming bool, now time.Time) {
	r, resp := &c.rs.req, &c.rs.resp
	bk := resp.body(len(r.method) == 4 && string(r.method) == "HEAD")
	if bk == bodyChunked || bk == bodyUntilClose || (bk == bodyLength && resp.contentLength > int64(uc.br.Buffered())) {
		uc.clearDeadline() // more reads to come, at the upstream's pace
	}
	// A body delimited by the close (as a chunked one is for an HTTP/1.0
	// client) ends the client connection too.
	keep := r.keepAlive && !c.s.closing.Load() && bk != bodyUntilClose && !(bk == bodyChunked && r.minor == 0)
	c.armWrite(now)
	c.writeResponseHead(ep, bk, keep)
	err := c.copyResponseBody(uc, bk, now)
	c.s.metrics.code(resp.status)

	// uc is pooled only in step: both bodies went whole, and the upstream
	// keeps the connection open.
	bodySent := c.finishBody(uc, streaming)
	if err == nil && bodySent && resp.reusable() && bk != bodyUntilClose {
		c.s.ups.put(uc, now)
	} else {
		uc.close()
	}
	if err != nil {
		c.s.log.Debug("response cut short", "endpoint", ep.ID, "err", err)
	}
	c.rs.keep = keep && err == nil && bodySent
}

// copyResponseBody copies the response body of kind bk from uc to the
// client, as it is framed, and flushes it unless the serve loop will.
func (c *conn) copyResponseBody(uc *upConn, bk bodyKind, now time.Time) error {
	cp := copier{bufs: &c.s.bufs, writesTo: c}
	var err error
	switch bk {
	case bodyLength:
		err = cp.copyN(c.bw, uc.br, c.rs.resp.contentLength)
	case bodyChunked:
		mode := chunkData // an HTTP/1.0 client gets the data, delimited by the close
		if c.rs.req.minor >= 1 {
			mode = chunkReframeTrailer
		}
		// A malformed body fails the copy, and uc is closed, never pooled.
		err = cp.copyChunked(c.bw, uc.br, mode)
	case bodyUntilClose:
		err = cp.copyUntilEOF(c.bw, uc.br)
	}
	cp.release()
	if err == nil {
		c.armWrite(now)
		if c.rw.rc == nil {
			err = c.bw.Flush()
		} // else the serve loop sends the rest when it starts waiting for the next request
	}
	return err
}

// sendBody streams the request body upstream while the response is read,
// so an upstream that answers before reading everything cannot deadlock us.
func (c *conn) sendBody(uc *upConn) {
	cp := copier{bufs: &c.s.bufs, readsFrom: c}
	var err error
	if c.rs.bodyHeld {
		if _, werr := uc.bw.Write(c.auth.held.b); werr != nil {
			err = dstErr(werr)
		}
	} else if c.rs.req.chunked {
		// Decoded strictly and re-chunked: the client's framing never
		// reaches the upstream. At a malformed chunk the upstream is cut
		// off, so it sees a body cut short, never what followed the fault,
		// and awaitResponse answers the client 400.
		err = cp.copyChunked(uc.bw, c.br, chunkReframe)
		if errors.Is(err, errBadChunk) {
			uc.close()
		}
	} else {
		err = cp.copyN(uc.bw, c.br, c.rs.req.contentLength)
	}
	if err == nil {
		if ferr := uc.bw.Flush(); ferr != nil {
			err = dstErr(ferr)
		}
	}
	cp.release()
	c.bodyMu.Lock()
	var ce *copyError
	switch {
	case err == nil:
		// All sent: from now on the upstream has ResponseTimeout to start
		// its answer, unless it started already.
		if !c.respStarted {
			uc.nc.SetReadDeadline(time.Now().Add(c.s.cfg.ResponseTimeout))
			uc.deadline = true
		}
	case !c.bodyStop && errors.As(err, &ce) && ce.src && !errors.Is(err, errBadChunk):
		// The client went away (or stalled past ClientIdleTimeout) in the
		// middle of its body: the upstream would wait for the rest
		// forever. Cut it off; nobody is left to answer.
		uc.close()
		err = errClientGone
	}
	c.bodyMu.Unlock()
	c.bodyDone <- err
}

// errClientGone: the client failed while its body streamed upstream.
var errClientGone = errors.New("client failed while sending its body")

// finishBody waits for sendBody after the response was relayed and reports
// whether the whole request body went upstream. If the body is still
// flowing (the upstream answered without reading it all), it is stopped.
func (c *conn) finishBody(uc *upConn, streaming bool) bool {
	if !streaming {
		return true
	}
	select {
	case err := <-c.bodyDone:
		return err == nil
	default:
	}
	// The upstream answered; the last of the body is most likely on its
	// way out. Wait a little for it, as net/http's transport does
	// (maxWriteWaitBeforeConnReuse), so that both connections stay in
	// step; an upstream that answered without reading the body loses the
	// connection instead.
	wait := time.NewTimer(maxBodyWaitBeforeReuse)
	defer wait.Stop()
	select {
	case err := <-c.bodyDone:
		return err == nil
	case <-wait.C:
	}
	uc.close()
	c.stopBody()
	return false
}

// maxBodyWaitBeforeReuse is how long a relayed response waits for its
// request body to finish sending before the connections are given up.
const maxBodyWaitBeforeReuse = 50 * time.Millisecond

// waitBody stops sendBody, if it runs, after uc failed, and returns how
// sendBody ended.
func (c *conn) waitBody(streaming bool) error {
	if streaming {
		return c.stopBody()
	}
	return nil
}

// stopBody interrupts sendBody's reads from the client and waits for it.
// The mutex orders the interruption after any deadline sendBody is setting,
// so the interruption cannot be undone.
func (c *conn) stopBody() error {
	if c.rs.bodyHeld {
		return <-c.bodyDone // no client reads to interrupt: uc was closed, the write fails
	}
	c.bodyMu.Lock()
	c.bodyStop = true
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.bodyMu.Unlock()
	err := <-c.bodyDone
	c.rdl = time.Time{}
	c.bodyStop = false
	c.linger = true // the rest of the body may still be on its way
	return err
}

// armBodyRead refreshes the read deadline for sendBody unless it was stopped.
func (c *conn) armBodyRead() {
	c.bodyMu.Lock()
	if !c.bodyStop {
		c.armRead(time.Now())
	}
	c.bodyMu.Unlock()
}

// closeWrite half-closes a TCP connection so the peer sees the end of the
// stream while its own direction may still drain.
func closeWrite(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
