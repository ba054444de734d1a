package proxy

import (
	"bytes"
)

// request is a client request head, parsed in place. Its buffers are
// reused across the requests of one connection (see reqState).
type request struct {
	head
	method, target []byte
	host           []byte
	routingKey     []byte
	hasKey         bool
	upgrade        []byte // Upgrade header value when the client asks to switch protocols
	expect100      bool
	teTrailers     bool // TE: trailers, which gRPC-style upstreams need
	keepAlive      bool
	debug          bool // X-Edge-Debug: 1 asks for X-Edge-Route
}

// parse parses the head readHead read.
func (r *request) parse() error {
	i := bytes.IndexByte(r.buf, '\n')
	line := r.buf[:i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errMalformed
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return errMalformed
	}
	r.method = line[:sp1]
	r.target = line[sp1+1 : sp1+1+sp2]
	minor, err := parseVersion(line[sp1+sp2+2:])
	if err != nil {
		return err
	}
	r.minor = minor
	for _, c := range r.method {
		if c < '!' || c > '~' {
			return errMalformed
		}
	}
	for _, c := range r.target {
		if c <= ' ' || c == 0x7f {
			return errMalformed
		}
	}
	if err := r.parseFields(r.buf[i+1:]); err != nil {
		return err
	}
	hosts := 0
	for k := range r.fields {
		f := &r.fields[k]
		switch f.kind {
		case hHost:
			r.host = f.value
			hosts++
		case hRoutingKey:
			if r.hasKey && !bytes.Equal(r.routingKey, f.value) {
				return errMalformed
			}
			r.routingKey, r.hasKey = f.value, len(f.value) > 0
		case hUpgrade:
			r.upgrade = f.value
		case hOther:
			if len(f.name) == len("x-edge-debug") && eqFold(f.name, "x-edge-debug") {
				r.debug = len(f.value) == 1 && f.value[0] == '1'
			}
		case hExpect:
			r.expect100 = eqFold(f.value, "100-continue")
		case hTE:
			tokens(f.value, func(tok []byte) {
				if eqFold(tok, "trailers") {
					r.teTrailers = true
				}
			})
		}
	}
	if hosts > 1 || (hosts == 0 && r.minor == 1) {
		return errMalformed
	}
	if r.chunked && r.minor == 0 {
		return errMalformed
	}
	if !r.connUpgrade {
		r.upgrade = nil
	}
	if r.minor == 1 {
		r.keepAlive = !r.connClose
	} else {
		r.keepAlive = r.connKeepAlive && !r.connClose
	}
	return r.normalizeTarget()
}

// normalizeTarget turns an absolute-form target (http://host/path) into
// origin form, taking the host from it as RFC 9112 says.
func (r *request) normalizeTarget() error {
	t := r.target
	if len(t) > 0 && t[0] == '/' {
		return nil
	}
	if len(t) == 1 && t[0] == '*' {
		return nil
	}
	var rest []byte
	switch {
	case len(t) > 7 && eqFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && eqFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return errMalformed
	}
	slash := bytes.IndexAny(rest, "/?")
	if slash < 0 {
		r.host, r.target = rest, []byte("/")
		return nil
	}
	r.host = rest[:slash]
	if rest[slash] == '?' {
		// "http://h?q" has an empty path: "/?q". Rebuild it in the head buffer.
		r.buf = append(r.buf, '/')
		r.buf = append(r.buf, rest[slash:]...)
		r.target = r.buf[len(r.buf)-len(rest[slash:])-1:]
		return nil
	}
	r.target = rest[slash:]
	return nil
}

// hasBody reports whether a body follows the head.
func (r *request) hasBody() bool { return r.chunked || r.contentLength > 0 }

// idempotent reports whether the method is idempotent by RFC 9110 (9.2.2):
// sending such a request twice has the effect of sending it once, so it may
// be resent after its connection failed with the request possibly
// delivered. (net/http's isReplayable resends only GET, HEAD, OPTIONS and
// TRACE; PUT and DELETE are idempotent by the same RFC, and here the
// cell's endpoints are one service's replicas.) Other methods (POST,
// PATCH, ...) are never resent once any of them left the edge.
func (r *request) idempotent() bool {
	switch string(r.method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
