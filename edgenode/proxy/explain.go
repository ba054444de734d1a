package proxy

import (
	"bufio"
	"strconv"

	"github.com/edgecell/edgecell/edgenode/route"
)

// Why endpoints were passed over for a request: the gate's reasons
// (route.Reason, except Allowed) plus one for endpoints that were tried and
// could not be connected to.
const (
	skipUnreachable = route.NumReasons
	numSkips        = route.NumReasons + 1
)

// skipWord names c.skips' indexes in X-Edge-Route and 502 reasons.
func skipWord(i int) string {
	if i == skipUnreachable {
		return "unreachable"
	}
	return route.Reason(i).String()
}

// appendSkips appends "2 endpoints breaker-open, 1 endpoint unreachable".
// It allocates nothing beyond b's growth.
func (c *conn) appendSkips(b []byte) []byte {
	first := true
	for i, n := range c.skips {
		if n == 0 {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = strconv.AppendUint(b, uint64(n), 10)
		if n == 1 {
			b = append(b, " endpoint "...)
		} else {
			b = append(b, " endpoints "...)
		}
		b = append(b, skipWord(i)...)
	}
	return b
}

// replyNoEndpoint answers 502 when every endpoint of the cell was skipped
// or unreachable, saying why in the body's "reason" (and X-Edge-Route when
// asked for): {"error":"no endpoint available","reason":"3 endpoints breaker-open",...}.
func (c *conn) replyNoEndpoint() bool {
	msg := "no endpoint available"
	if c.skips == ([numSkips]uint16{skipUnreachable: c.skips[skipUnreachable]}) {
		msg = "no endpoint reachable" // every endpoint was tried
	}
	// The reply builds its body in c.scratch; the reason lives after it
	// until then, in a buffer of its own.
	why := c.appendSkips(c.whyBuf[:0])
	c.whyBuf = why
	return c.replyWhy(502, msg, why)
}

// writeRoute writes X-Edge-Route for a request that asked with
// X-Edge-Debug: 1, e.g. "own-region us-east" or
// "failover us-east->eu-west: 2 endpoints breaker-open". Only that request
// pays for it.
func (c *conn) writeRoute(w *bufio.Writer, ep *route.Endpoint) {
	own := c.s.cfg.Region
	b := append(c.whyBuf[:0], "X-Edge-Route: "...)
	if ep.Region == own {
		b = append(b, "own-region "...)
		b = append(b, own...)
	} else {
		b = append(b, "failover "...)
		b = append(b, own...)
		b = append(b, "->"...)
		b = append(b, ep.Region...)
	}
	if c.skips != ([numSkips]uint16{}) {
		b = append(b, ": "...)
		b = c.appendSkips(b)
	} else if ep.Region != own {
		b = append(b, ": no endpoint in "...)
		b = append(b, own...)
	}
	b = append(b, "\r\n"...)
	c.whyBuf = b
	w.Write(b)
}
