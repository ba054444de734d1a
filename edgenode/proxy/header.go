package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
)

// hkind classifies the header names the proxy acts on; everything else is
// passed through unless the Connection header lists it.
type hkind uint8

const (
	hOther hkind = iota
	hHost
	hContentLength
	hTransferEncoding
	hConnection
	hUpgrade
	hExpect
	hTE
	hRoutingKey
	hForwardedFor
	hForwardedProto
	hForwardedHost
	hForwarded // RFC 7239
	hEdgeRay
	hEdgeEndpoint
	hEdgeRoute
	hEdgeKeyID       // X-Edge-Key-Id: set by the edge for the upstream, never taken from a client
	hEdgeSubject     // X-Edge-Subject: likewise
	hKeepAlive       // hop-by-hop
	hProxyConnection // hop-by-hop
	hProxyAuth       // Proxy-Authenticate, Proxy-Authorization: hop-by-hop
	hTrailer
)

// classify maps a header name to its kind, ASCII case-insensitively.
func classify(name []byte) hkind {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return hTE
		}
	case 4:
		if eqFold(name, "host") {
			return hHost
		}
	case 6:
		if eqFold(name, "expect") {
			return hExpect
		}
	case 7:
		if eqFold(name, "upgrade") {
			return hUpgrade
		}
		if eqFold(name, "trailer") {
			return hTrailer
		}
	case 9:
		if eqFold(name, "forwarded") {
			return hForwarded
		}
	case 10:
		if eqFold(name, "connection") {
			return hConnection
		}
		if eqFold(name, "keep-alive") {
			return hKeepAlive
		}
		if eqFold(name, "x-edge-ray") {
			return hEdgeRay
		}
	case 12:
		if eqFold(name, "x-edge-route") {
			return hEdgeRoute
		}
	case 13:
		if eqFold(name, "x-routing-key") {
			return hRoutingKey
		}
		if eqFold(name, "x-edge-key-id") {
			return hEdgeKeyID
		}
	case 14:
		if eqFold(name, "content-length") {
			return hContentLength
		}
		if eqFold(name, "x-edge-subject") {
			return hEdgeSubject
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return hForwardedFor
		}
		if eqFold(name, "x-edge-endpoint") {
			return hEdgeEndpoint
		}
	case 16:
		if eqFold(name, "x-forwarded-host") {
			return hForwardedHost
		}
		if eqFold(name, "proxy-connection") {
			return hProxyConnection
		}
	case 17:
		if eqFold(name, "transfer-encoding") {
			return hTransferEncoding
		}
		if eqFold(name, "x-forwarded-proto") {
			return hForwardedProto
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return hProxyAuth
		}
	case 19:
		if eqFold(name, "proxy-authorization") {
			return hProxyAuth
		}
	}
	return hOther
}

// eqFold reports whether b equals lower, ignoring ASCII case; lower must be lower case.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// eqFoldBytes reports whether a equals b ignoring ASCII case.
func eqFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// tokens calls fn for each comma-separated, trimmed, non-empty element of v.
func tokens(v []byte, fn func(tok []byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		if tok = trimOWS(tok); len(tok) > 0 {
			fn(tok)
		}
	}
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// Errors of message parsing. They decide the status the client gets.
var (
	errHeaderTooLarge  = errors.New("header too large")
	errMalformed       = errors.New("malformed message")
	errUnsupportedTE   = errors.New("unsupported transfer-encoding")
	errUnsupportedVers = errors.New("unsupported HTTP version")
	errURITooLong      = errors.New("request target too long")

	errTooManyFields     = &headError{errHeaderTooLarge, "too many header fields"}
	errTooManyConnTokens = &headError{errMalformed, "too many Connection tokens"}
	errTargetTooLong     = &headError{errURITooLong, "request target too long"}
)

// headError is a head refused by a limit or rule with a message of its
// own; it unwraps to the error that decides the status.
type headError struct {
	status error
	msg    string
}

func (e *headError) Error() string { return e.msg }
func (e *headError) Unwrap() error { return e.status }

// UnderscoreAction says what becomes of a request header whose name holds
// an underscore, as Envoy's headers_with_underscores_action: CGI and WSGI
// upstreams map "-" and "_" to the same variable, so X_Edge_Key_Id would
// reach them as the identity header the edge sets.
type UnderscoreAction uint8

const (
	// UnderscoresReject answers 400 naming the header (the default).
	UnderscoresReject UnderscoreAction = iota
	// UnderscoresDrop removes the header; the request goes on.
	UnderscoresDrop
	// UnderscoresAllow forwards the header as sent.
	UnderscoresAllow
)

// ParseUnderscoreAction reads "reject", "drop" or "allow".
func ParseUnderscoreAction(s string) (UnderscoreAction, error) {
	switch s {
	case "reject":
		return UnderscoresReject, nil
	case "drop":
		return UnderscoresDrop, nil
	case "allow":
		return UnderscoresAllow, nil
	}
	return 0, errors.New("headers with underscores: want reject, drop or allow, not " + strconv.Quote(s))
}

// HeadLimits bound what a client's request head may hold, so that parsing
// and rewriting one costs time linear in its size and small in absolute
// terms. Zero fields take the defaults.
type HeadLimits struct {
	// MaxHeaderCount bounds the header fields of a request; over it the
	// client gets 431. Default 100 (Envoy's max_headers_count).
	MaxHeaderCount int
	// MaxConnectionTokens bounds the tokens of a request's or response's
	// Connection fields, each of which names a field to drop: with at most
	// MaxHeaderCount fields that bounds the comparisons. Over it: 400
	// (502 from an upstream). Default 16.
	MaxConnectionTokens int
	// MaxRequestTarget bounds the request target in bytes; over it: 414.
	// Default 8 KiB (nginx's large_client_header_buffers).
	MaxRequestTarget int
	// HeadersWithUnderscores says what becomes of request header names
	// holding "_". Default UnderscoresReject.
	HeadersWithUnderscores UnderscoreAction
	// AllowedUpgrades lists the Upgrade protocols, besides websocket, that
	// are forwarded (ASCII case-insensitive, a "/version" suffix ignored).
	// Other Upgrade requests are forwarded as plain requests without their
	// Upgrade, as nginx does. A per-cell list needs a proto change.
	AllowedUpgrades []string
}

func (l HeadLimits) withDefaults() HeadLimits {
	l.MaxHeaderCount = orDefault(l.MaxHeaderCount, 100)
	l.MaxConnectionTokens = orDefault(l.MaxConnectionTokens, 16)
	l.MaxRequestTarget = orDefault(l.MaxRequestTarget, 8<<10)
	return l
}

// upgradeAllowed reports whether the Upgrade token tok may be forwarded.
func (l *HeadLimits) upgradeAllowed(tok []byte) bool {
	return listsUpgrade(websocketOnly, tok) || listsUpgrade(l.AllowedUpgrades, tok)
}

// websocketOnly is the Upgrade every cell takes.
var websocketOnly = []string{"websocket"}

// field is one header line, split in place in the head buffer.
type field struct {
	name, value []byte
	kind        hkind
}

// head is what requests and responses share: the raw bytes of the head,
// the fields found in it and the framing they declare. Slices point into
// buf and are valid until the next read.
type head struct {
	buf           []byte
	lineStart     int // where the line being read starts in buf (readHead resumes there)
	fields        []field
	minor         int // HTTP/1.minor
	contentLength int64
	chunked       bool
	connClose     bool
	connKeepAlive bool
	connUpgrade   bool
	connTokens    [][]byte // other names listed in Connection: hop-by-hop
	connCount     int      // tokens of the Connection fields, all kinds
}

// reset readies h for reading the next head with readHead.
func (h *head) reset() { *h = h.emptied() }

// emptied is a head ready for readHead that reuses h's buffers.
func (h *head) emptied() head {
	return head{buf: h.buf[:0], fields: h.fields[:0], connTokens: h.connTokens[:0], minor: 1, contentLength: -1}
}

// readHead reads lines up to and including the empty line ending a head
// into h.buf, skipping empty lines before the first one. After an error
// (a deadline, say) it may be called again to resume where it stopped:
// bufio hands over what it had read, and h keeps it.
func (h *head) readHead(br *bufio.Reader, limit int) error {
	for {
		line, err := br.ReadSlice('\n')
		if len(h.buf)+len(line) > limit {
			return errHeaderTooLarge
		}
		h.buf = append(h.buf, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return err
		}
		l := h.buf[h.lineStart:]
		if len(l) == 1 || (len(l) == 2 && l[0] == '\r') {
			if h.lineStart == 0 {
				h.buf = h.buf[:0] // tolerated empty line before a request
				continue
			}
			return nil
		}
		h.lineStart = len(h.buf)
	}
}

// parseFields splits the header lines (after the first line) into h.fields
// and reads the framing and Connection fields. maxFields (0: any number)
// and maxConnTokens bound them; us says what becomes of names with "_".
func (h *head) parseFields(rest []byte, maxFields, maxConnTokens int, us UnderscoreAction) error {
	n := 0
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errMalformed // obsolete line folding
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errMalformed
		}
		if n++; maxFields > 0 && n > maxFields {
			return errTooManyFields
		}
		name := line[:colon]
		underscore := false
		for _, c := range name {
			underscore = underscore || c == '_'
			if c <= ' ' || c >= 0x7f || c == '"' || c == '(' || c == ')' || c == ',' || c == '/' || c == ';' || c == '<' || c == '>' || c == '=' || c == '?' || c == '@' || c == '[' || c == ']' || c == '\\' || c == '{' || c == '}' {
				return errMalformed
			}
		}
		value := trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return errMalformed
		}
		if underscore {
			switch us {
			case UnderscoresReject:
				return &headError{errMalformed, "header name with an underscore refused: " + string(name)}
			case UnderscoresDrop:
				continue
			}
		}
		f := field{name: name, value: value, kind: classify(name)}
		if err := h.noteField(&f, maxConnTokens); err != nil {
			return err
		}
		h.fields = append(h.fields, f)
	}
	if h.chunked && h.contentLength >= 0 {
		return errMalformed // both framings: refuse rather than guess (smuggling)
	}
	return nil
}

// validFieldValue reports whether v holds only field-vchars, spaces and tabs
// (RFC 9110 5.5). Control characters, a bare CR above all, are refused rather
// than forwarded: an upstream may read them as line ends.
func validFieldValue[T string | []byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func (h *head) noteField(f *field, maxConnTokens int) error {
	switch f.kind {
	case hContentLength:
		n, ok := parseLength(f.value)
		if !ok || (h.contentLength >= 0 && h.contentLength != n) {
			return errMalformed
		}
		h.contentLength = n
	case hTransferEncoding:
		if !eqFold(f.value, "chunked") || h.chunked {
			return errUnsupportedTE
		}
		h.chunked = true
	case hConnection:
		tokens(f.value, func(tok []byte) {
			if h.connCount++; h.connCount > maxConnTokens {
				return
			}
			switch {
			case eqFold(tok, "close"):
				h.connClose = true
			case eqFold(tok, "keep-alive"):
				h.connKeepAlive = true
			case eqFold(tok, "upgrade"):
				h.connUpgrade = true
			default:
				h.connTokens = append(h.connTokens, tok)
			}
		})
		if h.connCount > maxConnTokens {
			return errTooManyConnTokens
		}
	}
	return nil
}

// listedInConnection reports whether the Connection header names this field.
// The tokens are at most MaxConnectionTokens, so dropping them costs at most
// that many comparisons a field.
func (h *head) listedInConnection(name []byte) bool {
	for _, t := range h.connTokens {
		if eqFoldBytes(t, name) {
			return true
		}
	}
	return false
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseVersion reads "HTTP/1.x" and returns x; other versions are unsupported.
func parseVersion(v []byte) (int, error) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." {
		if len(v) == 8 && string(v[:5]) == "HTTP/" && v[5] >= '0' && v[5] <= '9' {
			return 0, errUnsupportedVers
		}
		return 0, errMalformed
	}
	if v[7] != '0' && v[7] != '1' {
		return 0, errUnsupportedVers
	}
	return int(v[7] - '0'), nil
}
