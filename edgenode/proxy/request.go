package proxy

import (
	"bytes"
	"errors"

	"github.com/edgecell/edgecell/hmacsig"
)

// request is a client request head, parsed in place. Its buffers are
// reused across the requests of one connection (see reqState).
type request struct {
	head
	method, target []byte
	host           []byte
	routingKey     []byte
	hasKey         bool
	upgrade        []byte // the protocol to switch to, when the client asks for one the edge allows
	upgradeAsked   []byte // the Upgrade value asked for (a cell may allow more: cellUpgrade)
	expect100      bool
	teTrailers     bool // TE: trailers, which gRPC-style upstreams need
	keepAlive      bool
	debug          bool // X-Edge-Debug: 1 asks for X-Edge-Route
}

// parse parses the head readHead read, within lim.
func (r *request) parse(lim *HeadLimits) error {
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
	if len(r.target) > lim.MaxRequestTarget {
		return errTargetTooLong
	}
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
	if err := r.parseFields(r.buf[i+1:], lim.MaxHeaderCount, lim.MaxConnectionTokens, lim.HeadersWithUnderscores); err != nil {
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
	r.upgradeAsked = nil
	if r.connUpgrade && r.upgrade != nil {
		r.upgradeAsked = r.upgrade
		r.upgrade = allowedUpgrade(r.upgrade, lim)
	} else {
		r.upgrade = nil
	}
	if r.minor == 1 {
		r.keepAlive = !r.connClose
	} else {
		r.keepAlive = r.connKeepAlive && !r.connClose
	}
	if err := r.normalizeTarget(); err != nil {
		return err
	}
	if !validHost(r.host) {
		return &headError{errMalformed, "invalid Host header"}
	}
	return r.removeDotSegments()
}

// hostChars are the bytes a Host may hold (reg-name, IP literal, port:
// RFC 3986, as net/http's httpguts.ValidHostHeader): nothing that could
// close the quoted-string the edge writes it into (Forwarded's host=).
var hostChars = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!$%&'()*+,-.:;=[]_~") {
		t[c] = true
	}
	return t
}()

func validHost(h []byte) bool {
	for _, c := range h {
		if !hostChars[c] {
			return false
		}
	}
	return true
}

// allowedUpgrade returns the first protocol of an Upgrade value that lim
// allows, or nil: the request then goes upstream as a plain request, its
// Upgrade and Connection: upgrade dropped (nginx forwards neither unless
// told to; Envoy refuses an upgrade it is not configured for with 403, but
// a client offering h2c, as curl --http2 does, then fails instead of
// falling back to HTTP/1.1, which RFC 9110 7.8 lets the server choose).
func allowedUpgrade(v []byte, lim *HeadLimits) []byte { return firstUpgrade(v, lim.upgradeAllowed) }

// cellUpgrade is the first protocol of the Upgrade value asked for that a
// cell's allowed_upgrades list, or nil.
func cellUpgrade(v []byte, allowed []string) []byte {
	return firstUpgrade(v, func(tok []byte) bool { return listsUpgrade(allowed, tok) })
}

// firstUpgrade is the first token of the Upgrade value v that ok takes, or nil.
func firstUpgrade(v []byte, ok func(tok []byte) bool) []byte {
	var first []byte
	tokens(v, func(tok []byte) {
		if first == nil && ok(tok) {
			first = tok
		}
	})
	return first
}

// listsUpgrade reports whether names hold the protocol of the Upgrade
// token tok: ASCII case-insensitive, its "/version" suffix ignored.
func listsUpgrade(names []string, tok []byte) bool {
	if i := bytes.IndexByte(tok, '/'); i >= 0 {
		tok = tok[:i]
	}
	for _, a := range names {
		if len(a) == len(tok) && eqFoldBytes(tok, []byte(a)) {
			return true
		}
	}
	return false
}

// errClimbsAboveRoot and errEncodedSlashDots refuse paths that could reach
// outside an endpoint's path prefix.
var (
	errClimbsAboveRoot  = &headError{errMalformed, hmacsig.ErrClimbsAboveRoot.Error()}
	errEncodedSlashDots = &headError{errMalformed, hmacsig.ErrEncodedSlashDots.Error()}
)

// removeDotSegments normalises the path of an origin-form target before
// an endpoint's path prefix is put in front of it, as the signature
// covers it (hmacsig.NormalizeTarget: "/api/../admin" goes upstream as
// "/admin" under the prefix, never above it). The rewritten target is
// built at the end of the head buffer, as normalizeTarget does.
func (r *request) removeDotSegments() error {
	out, changed, err := hmacsig.NormalizeTarget(r.buf, r.target)
	switch {
	case errors.Is(err, hmacsig.ErrClimbsAboveRoot):
		return errClimbsAboveRoot
	case err != nil:
		return errEncodedSlashDots
	case changed:
		start := len(r.buf)
		r.buf, r.target = out, out[start:]
	}
	return nil
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
