package proxy

import (
	"bytes"
	"net/http"
)

// response is an upstream response head, parsed in place.
type response struct {
	head
	status int
	code   []byte // the three status digits
	reason []byte
}

// bodyKind says how a message body is delimited.
type bodyKind uint8

const (
	bodyNone bodyKind = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// parse parses the head readHead read (after reset); maxConnTokens bounds
// the tokens of its Connection fields.
func (r *response) parse(maxConnTokens int) error {
	i := bytes.IndexByte(r.buf, '\n')
	line := r.buf[:i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return errMalformed
	}
	minor, err := parseVersion(line[:8])
	if err != nil {
		return err
	}
	r.minor = minor
	r.code = line[9:12]
	r.status = 0
	for _, c := range r.code {
		if c < '0' || c > '9' {
			return errMalformed
		}
		r.status = r.status*10 + int(c-'0')
	}
	if r.status < 100 {
		return errMalformed
	}
	r.reason = nil
	if len(line) > 13 {
		r.reason = line[13:]
		if !validFieldValue(r.reason) {
			// A reason-phrase is tabs, spaces, visible characters and
			// obs-text (RFC 9112 4), as a field value. It carries no
			// meaning and clients should ignore it, so a bad one costs the response only its
			// text, not a 502; no control character reaches the client.
			r.reason = []byte(http.StatusText(r.status))
		}
	}
	return r.parseFields(r.buf[i+1:], 0, maxConnTokens, UnderscoresAllow)
}

// body says how this response's body is delimited, given the request method.
func (r *response) body(head bool) bodyKind {
	switch {
	case head || r.status < 200 || r.status == 204 || r.status == 304:
		return bodyNone
	case r.chunked:
		return bodyChunked
	case r.contentLength == 0:
		return bodyNone
	case r.contentLength > 0:
		return bodyLength
	default:
		return bodyUntilClose
	}
}

// reusable reports whether the upstream keeps the connection open after this response.
func (r *response) reusable() bool {
	if r.minor == 0 {
		return r.connKeepAlive && !r.connClose
	}
	return !r.connClose
}
