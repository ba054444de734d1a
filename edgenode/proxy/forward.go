package proxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
)

// serveRequest routes and proxies the request just read and reports
// whether the connection stays open.
func (c *conn) serveRequest(start time.Time) bool {
	c.newRay()
	c.bodyRead = false
	r := &c.req
	if !r.hasKey {
		return c.reply(400, "missing X-Routing-Key header")
	}
	t := c.s.cfg.Table.Load() // the whole request uses this one table
	if t == nil || t.Revision() == 0 {
		return c.reply(503, "edge has no routing state yet")
	}
	cell := t.Lookup(r.routingKey)
	if cell == nil {
		return c.reply(404, "unknown routing key")
	}
	if cell.Len() == 0 {
		return c.reply(502, "cell has no endpoints")
	}
	// Endpoints whose gate says no (breaker, health, local trip) are
	// skipped; the candidate order already fails over region by region.
	now := start.UnixNano()
	c.skips = [numSkips]uint16{}
	it := cell.Candidates(rand.Uint64())
	for ep := it.Next(); ep != nil; ep = it.Next() {
		if why := ep.Gate.Check(now); why != route.Allowed {
			c.skips[why]++
			continue
		}
		if c.forward(ep, start) {
			return c.keep
		}
		c.skips[skipUnreachable]++
	}
	return c.replyNoEndpoint()
}

// forward proxies the request to ep. It returns false only when no
// connection to ep could be made and nothing was consumed, so the caller
// may try the next endpoint; otherwise the client has its answer.
func (c *conn) forward(ep *route.Endpoint, start time.Time) bool {
	for {
		uc, err := c.s.ups.get(ep, start, c.req.hasBody())
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
			return false
		}
		ep.Gate.ConnectSucceeded()
		if !c.exchange(uc, ep, start) {
			// A pooled connection the upstream had closed; nothing of the
			// request was consumed, so resending it is safe.
			if c.s.metrics != nil {
				c.s.metrics.staleRetries.Add(1)
			}
			continue
		}
		return true
	}
}

// exchange sends the request on uc and relays the response. It returns
// false when uc was a reused connection that failed before the upstream
// answered anything and before any of the body was consumed.
func (c *conn) exchange(uc *upConn, ep *route.Endpoint, start time.Time) bool {
	r := &c.req
	c.writeRequestHead(uc.bw, ep)
	streaming := false
	if r.hasBody() {
		if !r.chunked && r.contentLength <= int64(c.br.Buffered()) {
			// The whole body is here: it leaves with the head in one write.
			b, _ := c.br.Peek(int(r.contentLength))
			uc.bw.Write(b)
			c.br.Discard(len(b))
			c.bodyRead = true
		} else {
			streaming = true
		}
	}
	// Send the head (and a small body) and, unless the body still has to
	// stream, wait for the answer without a speculative read.
	waited := uc.rw.rc != nil && !streaming
	var err error
	if waited {
		err = uc.rw.flushAndWait(uc.nc, uc.bw, start.Add(readWaitSafety))
		uc.deadline = true
	} else {
		err = uc.bw.Flush()
	}
	if err != nil {
		uc.close()
		if uc.reused && !c.bodyRead {
			return false
		}
		ep.Gate.Record(route.ConnectError)
		c.keep = c.reply(502, "upstream connection failed")
		return true
	}
	if streaming {
		if r.expect100 && c.br.Buffered() == 0 {
			c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			c.bw.Flush()
		}
		c.bodyRead = true
		go c.sendBody(uc)
	}

	resp := &c.resp
	shortDL := waited
	// armResponse bounds the wait for the response head (not for a
	// streaming request, whose upload may legitimately be slow).
	armResponse := func() {
		if streaming {
			uc.clearDeadline()
			return
		}
		uc.nc.SetReadDeadline(start.Add(c.s.cfg.ResponseTimeout))
		uc.deadline = true
	}
	if !waited {
		armResponse() // also replaces any deadline an earlier exchange left
	}
	for {
		resp.reset()
		err := resp.readHead(uc.br, c.s.cfg.MaxHeaderBytes)
		if err != nil && shortDL && errors.Is(err, os.ErrDeadlineExceeded) {
			// Only the readiness deadline: the upstream takes its time.
			armResponse()
			shortDL = false
			err = resp.readHead(uc.br, c.s.cfg.MaxHeaderBytes)
		}
		if err == nil {
			err = resp.parse()
		}
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// Never retried: the upstream has the request and may act on it.
			uc.close()
			c.waitBody(streaming)
			c.s.log.Debug("upstream response timed out", "endpoint", ep.ID, "timeout", c.s.cfg.ResponseTimeout)
			ep.Gate.Record(route.Timeout)
			c.keep = c.reply(504, "upstream timed out")
			return true
		}
		if err != nil {
			nothing := len(resp.buf) == 0
			uc.close()
			c.waitBody(streaming)
			if uc.reused && nothing && !c.bodyRead {
				return false
			}
			c.s.log.Debug("upstream failed before responding", "endpoint", ep.ID, "err", err)
			ep.Gate.Record(route.ConnectError)
			c.keep = c.reply(502, "upstream failed before responding")
			return true
		}
		if resp.status >= 200 || resp.status == 101 {
			break
		}
		// 1xx: an HTTP/1.0 client does not understand it.
		if r.minor >= 1 && c.writeInformational() != nil {
			uc.close()
			c.waitBody(streaming)
			c.keep = false
			return true
		}
	}
	if resp.status >= 500 {
		ep.Gate.Record(route.Status5xx)
	} else {
		ep.Gate.Record(route.Success)
	}
	now := time.Now()
	c.now = now
	if c.s.metrics != nil {
		c.s.metrics.upstreamTime.Observe(now.Sub(start).Seconds())
	}
	if resp.status == 101 {
		uc.clearDeadline()
		if r.upgrade == nil || streaming {
			uc.close()
			c.waitBody(streaming)
			c.keep = c.reply(502, "upstream switched protocols unasked")
			return true
		}
		c.tunnel(uc, ep)
		return true
	}

	bk := resp.body(len(r.method) == 4 && string(r.method) == "HEAD")
	if bk == bodyChunked || bk == bodyUntilClose || (bk == bodyLength && resp.contentLength > int64(uc.br.Buffered())) {
		uc.clearDeadline() // more reads to come, at the upstream's pace
	}
	keep := r.keepAlive && !c.s.closing.Load() && bk != bodyUntilClose && !(bk == bodyChunked && r.minor == 0)
	c.armWrite(now)
	c.writeResponseHead(ep, bk, keep)
	cp := copier{bufs: &c.s.bufs, writesTo: c}
	err = nil
	switch bk {
	case bodyLength:
		err = cp.copyN(c.bw, uc.br, resp.contentLength)
	case bodyChunked:
		err = cp.copyChunked(c.bw, uc.br, r.minor >= 1)
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
	c.s.metrics.code(resp.status)

	bodySent := c.finishBody(uc, streaming)
	if err == nil && bodySent && resp.reusable() && bk != bodyUntilClose {
		c.s.ups.put(uc, now)
	} else {
		uc.close()
	}
	if err != nil {
		c.s.log.Debug("response cut short", "endpoint", ep.ID, "err", err)
	}
	c.keep = keep && err == nil && bodySent
	return true
}

// sendBody streams the request body upstream while the response is read,
// so an upstream that answers before reading everything cannot deadlock us.
func (c *conn) sendBody(uc *upConn) {
	cp := copier{bufs: &c.s.bufs, readsFrom: c}
	var err error
	if c.req.chunked {
		err = cp.copyChunked(uc.bw, c.br, true)
	} else {
		err = cp.copyN(uc.bw, c.br, c.req.contentLength)
	}
	if err == nil {
		if ferr := uc.bw.Flush(); ferr != nil {
			err = dstErr(ferr)
		}
	}
	cp.release()
	c.bodyDone <- err
}

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
	uc.close()
	c.stopBody()
	return false
}

// waitBody stops sendBody, if it runs, after uc failed.
func (c *conn) waitBody(streaming bool) {
	if streaming {
		c.stopBody()
	}
}

// stopBody interrupts sendBody's reads from the client and waits for it.
// The mutex orders the interruption after any deadline sendBody is setting,
// so the interruption cannot be undone.
func (c *conn) stopBody() {
	c.bodyMu.Lock()
	c.bodyStop = true
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.bodyMu.Unlock()
	<-c.bodyDone
	c.rdl = time.Time{}
	c.bodyStop = false
	c.linger = true // the rest of the body may still be on its way
}

// armBodyRead refreshes the read deadline for sendBody unless it was stopped.
func (c *conn) armBodyRead() {
	c.bodyMu.Lock()
	if !c.bodyStop {
		c.armRead(time.Now())
	}
	c.bodyMu.Unlock()
}

// tunnel relays a 101 Switching Protocols response and then bytes both ways
// until either side closes. The client connection is not reused.
func (c *conn) tunnel(uc *upConn, ep *route.Endpoint) {
	c.keep = false
	c.writeResponseHead(ep, bodyNone, false)
	if err := c.bw.Flush(); err != nil {
		uc.close()
		return
	}
	c.nc.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		io.Copy(uc.nc, c.br) // buffered bytes first, then the raw connection
		closeWrite(uc.nc)
		close(done)
	}()
	io.Copy(c.nc, uc.br)
	closeWrite(c.nc)
	<-done
	uc.close()
}

// closeWrite half-closes a TCP connection so the peer sees the end of the
// stream while its own direction may still drain.
func closeWrite(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
