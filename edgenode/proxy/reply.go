package proxy

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
)

const hexDigits = "0123456789abcdef"

// newRay draws the request id of X-Edge-Ray: 16 lowercase hex digits.
// math/rand/v2's top-level source is per-thread and lock-free.
func (c *conn) newRay() {
	v := rand.Uint64()
	for i := 15; i >= 0; i-- {
		c.rs.ray[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func (c *conn) writeRay(w *bufio.Writer) {
	w.WriteString("X-Edge-Ray: ")
	w.Write(c.rs.ray[:])
	w.WriteString(c.s.raySuffix)
	w.WriteString("\r\n")
}

// reply answers the current request with a short JSON error, e.g.
// {"error":"unknown routing key","routing_key":"x","ray":"...-us-east"},
// and reports whether the connection stays open.
func (c *conn) reply(status int, msg string) bool {
	return c.replyWhy(status, msg, nil)
}

// replyWhy is reply with a "reason" field when why is not empty.
func (c *conn) replyWhy(status int, msg string, why []byte) bool {
	return c.replyWith(status, msg, why, "", "")
}

// replyWith is replyWhy with one more header field (a WWW-Authenticate
// challenge, a Retry-After) when name is not empty.
func (c *conn) replyWith(status int, msg string, why []byte, name, value string) bool {
	keep := c.rs.req.keepAlive && !c.s.closing.Load() && c.discardBody()
	b := append(c.scratch[:0], `{"error":"`...)
	b = appendJSONString(b, msg)
	if len(why) > 0 {
		b = append(b, `","reason":"`...)
		b = appendJSONString(b, why)
	}
	if c.rs.req.hasKey {
		b = append(b, `","routing_key":"`...)
		b = appendJSONString(b, c.rs.req.routingKey)
	}
	b = append(b, `","ray":"`...)
	b = append(b, c.rs.ray[:]...)
	b = appendJSONString(b, c.s.raySuffix)
	b = append(b, "\"}\n"...)
	c.scratch = b

	w := c.bw
	c.now = time.Now() // dates the next idle wait
	c.armWrite(c.now)
	var num [20]byte
	w.WriteString("HTTP/1.1 ")
	w.Write(strconv.AppendInt(num[:0], int64(status), 10))
	w.WriteByte(' ')
	w.WriteString(http.StatusText(status))
	w.WriteString("\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: ")
	w.Write(strconv.AppendInt(num[:0], int64(len(b)), 10))
	w.WriteString("\r\n")
	c.writeRay(w)
	if name != "" {
		w.WriteString(name)
		w.WriteString(": ")
		w.WriteString(value)
		w.WriteString("\r\n")
	}
	if c.rs.req.debug && why != nil {
		w.WriteString("X-Edge-Route: none: ")
		w.Write(why)
		w.WriteString("\r\n")
	}
	c.writeConnection(w, keep)
	w.WriteString("\r\n")
	w.Write(b)
	c.s.metrics.code(status)
	return w.Flush() == nil && keep
}

// writeConnection tells the client whether the connection stays open, where
// its protocol version does not already say so.
func (c *conn) writeConnection(w *bufio.Writer, keep bool) {
	switch {
	case !keep:
		w.WriteString("Connection: close\r\n")
	case c.rs.req.minor == 0:
		w.WriteString("Connection: keep-alive\r\n")
	}
}

// appendJSONString appends s escaped for the inside of a JSON string.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20 || ch == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hexDigits[ch>>4], hexDigits[ch&0xf])
		default:
			b = append(b, ch)
		}
	}
	return b
}

// writeRequestHead writes the request head for ep: path prefixed, Host
// rewritten, hop-by-hop fields and a client's X-Edge-Key-Id and
// X-Edge-Subject dropped, forwarding fields and the identity of an
// authenticated request set. The signing headers and Authorization pass
// through as they came.
func (c *conn) writeRequestHead(w *bufio.Writer, ep *route.Endpoint) {
	r := &c.rs.req
	w.Write(r.method)
	w.WriteByte(' ')
	if len(r.target) == 1 && r.target[0] == '*' && ep.PathPrefix != "" {
		w.WriteString(ep.PathPrefix)
	} else {
		w.WriteString(ep.PathPrefix)
		w.Write(r.target)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(ep.Host)
	w.WriteString("\r\n")
	var fwd uint64 // X-Forwarded-Proto/-Host kinds a trusted proxy sent
	for i := range r.fields {
		f := &r.fields[i]
		switch f.kind {
		case hOther, hRoutingKey, hEdgeEndpoint:
			if len(r.connTokens) > 0 && r.listedInConnection(f.name) {
				continue
			}
		case hTrailer:
			if !r.chunked {
				continue
			}
		case hForwardedFor, hForwarded, hForwardedProto, hForwardedHost:
			if !c.trusted {
				continue // set by the edge alone
			}
			if f.kind == hForwardedFor || f.kind == hForwarded {
				continue // the chain the edge extends, below
			}
			fwd |= 1 << f.kind // a trusted proxy's, kept as sent
		default:
			continue
		}
		w.Write(f.name)
		w.WriteString(": ")
		w.Write(f.value)
		w.WriteString("\r\n")
	}
	c.writeForwarding(w, fwd)
	c.writeRay(w)
	if c.rs.identity != "" {
		w.WriteString(c.rs.identityHeader)
		w.WriteString(": ")
		w.WriteString(c.rs.identity)
		w.WriteString("\r\n")
	}
	switch {
	case r.chunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case r.contentLength >= 0:
		var num [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(num[:0], r.contentLength, 10))
		w.WriteString("\r\n")
	}
	if r.teTrailers {
		w.WriteString("Te: trailers\r\n")
	}
	if r.upgrade != nil {
		w.WriteString("Connection: Upgrade\r\nUpgrade: ")
		w.Write(r.upgrade)
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// writeForwarding writes the forwarding fields (the peer's address, the
// scheme and host the client used): X-Forwarded-For, -Proto, -Host and
// Forwarded (RFC 7239). From a peer outside TrustedProxies they are the
// edge's alone, whatever the client sent; from a trusted one the
// X-Forwarded-For and Forwarded chains it sent are extended with it, and
// the X-Forwarded-Proto and -Host it sent (kept, fwd) replace the edge's.
func (c *conn) writeForwarding(w *bufio.Writer, fwd uint64) {
	r := &c.rs.req
	w.WriteString("X-Forwarded-For: ")
	if c.trusted {
		c.writeChain(w, hForwardedFor)
	}
	w.Write(c.clientIP)
	w.WriteString("\r\n")
	proto := "http"
	if c.tls {
		proto = "https"
	}
	if fwd&(1<<hForwardedProto) == 0 {
		w.WriteString("X-Forwarded-Proto: ")
		w.WriteString(proto)
		w.WriteString("\r\n")
	}
	if len(r.host) > 0 && fwd&(1<<hForwardedHost) == 0 {
		w.WriteString("X-Forwarded-Host: ")
		w.Write(r.host)
		w.WriteString("\r\n")
	}
	w.WriteString("Forwarded: ")
	if c.trusted {
		c.writeChain(w, hForwarded)
	}
	w.WriteString("for=")
	if bytes.IndexByte(c.clientIP, ':') >= 0 {
		w.WriteString(`"[`) // an IPv6 node is quoted and bracketed
		w.Write(c.clientIP)
		w.WriteString(`]"`)
	} else {
		w.Write(c.clientIP)
	}
	if len(r.host) > 0 {
		// A host is a quoted-string: it may hold ':' (a port). The parser
		// let no '"' or '\\' into it.
		w.WriteString(`;host="`)
		w.Write(r.host)
		w.WriteByte('"')
	}
	w.WriteString(";proto=")
	w.WriteString(proto)
	w.WriteString("\r\n")
}

// writeChain writes the values of the client's fields of kind k, each
// followed by ", ", as one list.
func (c *conn) writeChain(w *bufio.Writer, k hkind) {
	r := &c.rs.req
	for i := range r.fields {
		if f := &r.fields[i]; f.kind == k {
			w.Write(f.value)
			w.WriteString(", ")
		}
	}
}

// writeResponseHead writes the upstream's response head to the client with
// hop-by-hop fields dropped and the edge's own fields added.
func (c *conn) writeResponseHead(ep *route.Endpoint, bk bodyKind, keep bool) {
	r, w := &c.rs.resp, c.bw
	c.writeStatusLine()
	rawChunks := bk == bodyChunked && c.rs.req.minor >= 1
	c.writeResponseFields(rawChunks)
	c.writeRay(w)
	w.WriteString("X-Edge-Endpoint: ")
	w.WriteString(ep.Tag)
	w.WriteString("\r\n")
	if c.rs.req.debug {
		c.writeRoute(w, ep)
	}
	if rawChunks {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if r.status == 101 {
		w.WriteString("Connection: Upgrade\r\n")
	} else {
		c.writeConnection(w, keep)
	}
	w.WriteString("\r\n")
}

func (c *conn) writeResponseFields(rawChunks bool) {
	r, w := &c.rs.resp, c.bw
	for i := range r.fields {
		f := &r.fields[i]
		switch f.kind {
		case hConnection, hKeepAlive, hProxyConnection, hTransferEncoding, hEdgeRay, hEdgeEndpoint, hEdgeRoute, hProxyAuth:
			continue
		case hContentLength:
			if r.chunked {
				continue
			}
		case hTrailer:
			if !rawChunks {
				continue
			}
		case hUpgrade:
			if r.status != 101 {
				continue
			}
		default:
			if len(r.connTokens) > 0 && r.listedInConnection(f.name) {
				continue
			}
		}
		w.Write(f.name)
		w.WriteString(": ")
		w.Write(f.value)
		w.WriteString("\r\n")
	}
}

// writeInformational relays a 1xx response (other than 101) to the client.
func (c *conn) writeInformational() error {
	c.writeStatusLine()
	c.writeResponseFields(false)
	c.bw.WriteString("\r\n")
	return c.bw.Flush()
}

// writeStatusLine writes the upstream's status in the edge's HTTP version.
func (c *conn) writeStatusLine() {
	w := c.bw
	w.WriteString("HTTP/1.1 ")
	w.Write(c.rs.resp.code)
	w.WriteByte(' ')
	w.Write(c.rs.resp.reason)
	w.WriteString("\r\n")
}
