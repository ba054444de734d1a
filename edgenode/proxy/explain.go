package proxy

import (
	"bufio"
	"strconv"

	"github.com/edgecell/edgecell/edgenode/route"
)

// Everything here runs only for a request that asked for X-Edge-Route or
// that gets a 502, and appends to c.whyBuf: no allocation once it has grown.

// appendCount appends "1 endpoint" or "3 endpoints".
func appendCount(b []byte, n int) []byte {
	b = strconv.AppendUint(b, uint64(n), 10)
	if n == 1 {
		return append(b, " endpoint"...)
	}
	return append(b, " endpoints"...)
}

// appendSkips appends "2 endpoints breaker-open, 1 endpoint unhealthy":
// the endpoints the gates passed over, nothing when there were none.
func (c *conn) appendSkips(b []byte) []byte {
	first := true
	for i, n := range c.rs.skips {
		if n == 0 {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = appendCount(b, int(n))
		b = append(b, ' ')
		b = append(b, route.Reason(i).String()...)
	}
	return b
}

// appendPanic appends "panic: 0 of 3 endpoints routable (threshold 50%),
// routing to all".
func (c *conn) appendPanic(b []byte) []byte {
	b = append(b, "panic: "...)
	b = strconv.AppendUint(b, uint64(c.rs.routable), 10)
	b = append(b, " of "...)
	b = appendCount(b, c.rs.cell.Len())
	b = append(b, " routable (threshold "...)
	b = strconv.AppendUint(b, uint64(c.rs.cell.PanicThreshold()), 10)
	return append(b, "%), routing to all"...)
}

// appendRetry appends "retried after us-east-1 unreachable".
func (c *conn) appendRetry(b []byte) []byte {
	b = append(b, "retried after "...)
	b = append(b, c.rs.retryAfter.ID...)
	b = append(b, ' ')
	return append(b, c.rs.retryWhy.String()...)
}

// appendAttempts appends "upstream unreachable after 2 attempts" (or
// "failed before responding", or "failed" when the attempts failed both ways).
func (c *conn) appendAttempts(b []byte) []byte {
	b = append(b, "upstream "...)
	switch c.rs.failed {
	case 1 << unreachable:
		b = append(b, unreachable.String()...)
	case 1 << noResponse:
		b = append(b, noResponse.String()...)
	default:
		b = append(b, "failed"...)
	}
	b = append(b, " after "...)
	b = strconv.AppendUint(b, uint64(c.rs.attempts), 10)
	if c.rs.attempts == 1 {
		return append(b, " attempt"...)
	}
	return append(b, " attempts"...)
}

// replyNoEndpoint answers 502 when every endpoint of the cell was skipped,
// or the attempts the request was allowed failed, saying why in the body's
// "reason" (and X-Edge-Route when asked for):
// {"error":"no endpoint available","reason":"3 endpoints breaker-open",...} or
// {"error":"no endpoint reachable","reason":"1 endpoint unhealthy, upstream unreachable after 2 attempts",...}.
func (c *conn) replyNoEndpoint() bool {
	msg := "no endpoint available"
	// The reply builds its body in c.scratch; the reason lives after it
	// until then, in a buffer of its own.
	why := c.whyBuf[:0]
	sep := ", "
	if c.rs.panicking {
		why, sep = c.appendPanic(why), "; "
	} else {
		why = c.appendSkips(why)
	}
	if c.rs.attempts > 0 {
		msg = "upstream failed before responding"
		if c.rs.failed == 1<<unreachable {
			msg = "no endpoint reachable"
		}
		if len(why) > 0 {
			why = append(why, sep...)
		}
		why = c.appendAttempts(why)
	}
	c.whyBuf = why
	return c.replyWhy(502, msg, why)
}

// writeRoute writes X-Edge-Route for a request that asked with
// X-Edge-Debug: 1, e.g. "own-region us-east",
// "failover us-east->eu-west: 2 endpoints breaker-open",
// "own-region us-east: retried after us-east-1 unreachable" or
// "panic: 0 of 3 endpoints routable (threshold 50%), routing to all". Only
// that request pays for it.
func (c *conn) writeRoute(w *bufio.Writer, ep *route.Endpoint) {
	own := c.s.cfg.Region
	b := append(c.whyBuf[:0], "X-Edge-Route: "...)
	switch {
	case c.rs.panicking:
		b = c.appendPanic(b)
		if c.rs.retryAfter != nil {
			b = append(b, "; "...)
			b = c.appendRetry(b)
		}
	default:
		if ep.Region == own {
			b = append(b, "own-region "...)
			b = append(b, own...)
		} else {
			b = append(b, "failover "...)
			b = append(b, own...)
			b = append(b, "->"...)
			b = append(b, ep.Region...)
		}
		head := len(b)
		b = append(b, ": "...)
		details := len(b)
		b = c.appendSkips(b)
		if c.rs.retryAfter != nil {
			if len(b) > details {
				b = append(b, ", "...)
			}
			b = c.appendRetry(b)
		}
		if len(b) == details {
			if ep.Region != own {
				b = append(b, "no endpoint in "...)
				b = append(b, own...)
			} else {
				b = b[:head]
			}
		}
	}
	b = c.appendAuth(b)
	// The revision of the table the choice was made on, so that a load
	// test can check it against the breaker states of that revision.
	b = append(b, "\r\nX-Edge-Revision: "...)
	b = strconv.AppendUint(b, c.rs.revision, 10)
	b = append(b, "\r\n"...)
	c.whyBuf = b
	w.Write(b)
}
