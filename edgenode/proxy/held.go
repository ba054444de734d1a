package proxy

import (
	"bufio"
	"errors"
	"slices"
	"time"
)

// keepHeld is the largest held-body buffer a connection keeps between
// requests; a larger one (a signed body of up to the cell's MaxBody) is
// dropped once its request is done.
const keepHeld = 64 << 10

// errTooLarge: a held body grew past the cell's limit.
var errTooLarge = errors.New("request body over the limit")

// errOverBudget: holding more of a body would take the edge past its
// budget for held bodies (Config.MaxHeldBodyBytes).
var errOverBudget = errors.New("edge's budget for held request bodies spent")

// heldBody is the body of a signed request, read whole before the request
// is forwarded (its hash is part of the signature) and then sent upstream
// from memory. Reused across a connection's requests.
//
// It grows only as bytes arrive (doubling), whatever Content-Length
// announced, and every byte of room it grows by is taken from the Server's
// budget first and given back when the request is done. (The buffer of
// at most keepHeld a connection keeps between requests is not counted
// while unused: MaxConns bounds those.)
type heldBody struct {
	s        *Server
	b        []byte
	limit    int64
	reserved int64         // taken from the Server's budget for this body
	w        *bufio.Writer // writes into b, for the copier
}

func (h *heldBody) init(s *Server) {
	h.s = s
	h.w = bufio.NewWriterSize(h, bufSize)
}

// Write appends p, or fails with errTooLarge past the limit and with
// errOverBudget past the Server's budget.
func (h *heldBody) Write(p []byte) (int, error) {
	need := int64(len(h.b)) + int64(len(p))
	if need > h.limit {
		return 0, errTooLarge
	}
	if need > h.reserved {
		room := min(max(need, 2*h.reserved, bufSize), h.limit)
		if !h.s.reserveHeld(room - h.reserved) {
			return 0, errOverBudget
		}
		h.reserved = room
		if int64(cap(h.b)) < room {
			h.b = slices.Grow(h.b, int(room)-len(h.b))
		}
	}
	h.b = append(h.b, p...)
	return len(p), nil
}

// release forgets the body, gives its room back to the budget, and drops
// its buffer if it grew large.
func (h *heldBody) release() {
	if h.reserved > 0 {
		h.s.releaseHeld(h.reserved)
		h.reserved = 0
	}
	if cap(h.b) > keepHeld {
		h.b = nil
	}
	h.b = h.b[:0]
}

// holdBody reads the request body whole into st.held, up to limit bytes
// (and within the edge's budget for held bodies: 503 with Retry-After),
// and turns the request into one with that Content-Length, sent upstream
// from memory (c.rs.bodyHeld), so that it can also be resent. It returns the
// body (nil without one); false means the client has been answered: 413
// for a body over the limit (before reading any of it when Content-Length
// says so, otherwise as soon as a chunked body grows past it), 400 for
// malformed chunks, nothing when the client went away.
func (c *conn) holdBody(st *authState, limit int64) ([]byte, bool) {
	r := &c.rs.req
	h := &st.held
	h.b = h.b[:0]
	if !r.hasBody() {
		return nil, true
	}
	if !r.chunked && r.contentLength > limit {
		return nil, c.refuse(authTooLarge, tooLarge(limit))
	}
	if r.expect100 && c.br.Buffered() == 0 {
		// The client waits for this before it sends the body.
		c.armWrite(time.Now())
		c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if c.bw.Flush() != nil {
			c.rs.keep = false
			return nil, false
		}
	}
	r.expect100 = false
	h.limit = limit
	c.rs.bodyRead = true // until the body is all here: a failure leaves the connection unusable
	cp := copier{bufs: &c.s.bufs, readsFrom: c}
	var err error
	if r.chunked {
		err = cp.copyChunked(h.w, c.br, chunkData)
	} else {
		err = cp.copyN(h.w, c.br, r.contentLength)
	}
	if err == nil {
		if ferr := h.w.Flush(); ferr != nil {
			err = dstErr(ferr)
		}
	}
	cp.release()
	h.w.Reset(h)
	switch {
	case err == nil:
	case errors.Is(err, errTooLarge):
		c.linger = true // the rest of the body may still be on its way
		return nil, c.refuse(authTooLarge, tooLarge(limit))
	case errors.Is(err, errOverBudget):
		c.s.overBudget.Add(1)
		h.release()
		c.linger = true
		c.rs.req.keepAlive = false
		c.rs.keep = c.replyWith(503, "edge overloaded", []byte("memory for held request bodies is spent; retry shortly"), "Retry-After", "1")
		return nil, false
	case errors.Is(err, errBadChunk):
		c.linger = true
		c.rs.keep = c.reply(400, "malformed chunked body")
		return nil, false
	default:
		c.s.log.Debug("client failed while sending a signed body", "err", err)
		c.rs.keep = false
		return nil, false
	}
	c.rs.bodyRead, c.rs.bodyHeld = false, true
	r.chunked, r.contentLength = false, int64(len(h.b))
	return h.b, true
}
