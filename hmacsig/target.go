package hmacsig

import (
	"bytes"
	"errors"
)

// ErrClimbsAboveRoot and ErrEncodedSlashDots refuse request paths that
// could reach outside an endpoint's path prefix (NormalizeTarget).
var (
	ErrClimbsAboveRoot  = errors.New("request path climbs above the root")
	ErrEncodedSlashDots = errors.New("request path has a dot segment behind an encoded slash")
)

// NormalizeTarget normalises the path of an origin-form request target t
// as RFC 3986 5.2.4 does, appending the result to dst when it differs
// (changed); it is the request-target the signature covers, and what an
// edge forwards, with an endpoint's path prefix put in front of it:
// "." and ".." segments, also percent-encoded (%2e), are resolved, so
// "/api/../admin" goes upstream as "/admin" under the prefix and never
// above it. A path whose ".." would climb above the root is refused (RFC
// 3986 drops such segments silently; a client sending one is probing).
//
// %2F (and %5C) are not decoded: RFC 3986 2.2 makes an encoded slash data,
// not a delimiter, so decoding would change what a correct upstream sees
// (Envoy's path_with_escaped_slashes_action defaults to leaving them). An
// upstream that decodes them before resolving dots would still climb on
// "..%2f", so a segment that holds a dot segment once %2F or %5C is
// decoded is refused (Envoy's REJECT_REQUEST, narrowed to that case).
//
// A path without "." or "%" costs two byte scans and no allocation.
func NormalizeTarget(dst, t []byte) (out []byte, changed bool, err error) {
	if len(t) == 0 || t[0] != '/' {
		return dst, false, nil // "*"
	}
	end := bytes.IndexByte(t, '?')
	if end < 0 {
		end = len(t)
	}
	p := t[:end]
	if bytes.IndexByte(p, '.') < 0 && bytes.IndexByte(p, '%') < 0 {
		return dst, false, nil
	}
	dots := false
	for s := p[1:]; ; {
		seg, more := nextSegment(s)
		switch dotSegment(seg) {
		case 0:
			if bytes.IndexByte(seg, '%') >= 0 && hidesDotSegment(seg) {
				return dst, false, ErrEncodedSlashDots
			}
		default:
			dots = true
		}
		if !more {
			break
		}
		s = s[len(seg)+1:]
	}
	if !dots {
		return dst, false, nil
	}
	start := len(dst)
	out = dst
	for s := p[1:]; ; {
		seg, more := nextSegment(s)
		switch dotSegment(seg) {
		case 0:
			out = append(out, '/')
			out = append(out, seg...)
		case 2:
			if len(out) == start {
				return dst, false, ErrClimbsAboveRoot
			}
			out = out[:start+bytes.LastIndexByte(out[start:], '/')]
			fallthrough
		case 1:
			if !more {
				out = append(out, '/') // "/a/." and "/a/b/.." are "/a/"
			}
		}
		if !more {
			break
		}
		s = s[len(seg)+1:]
	}
	if len(out) == start {
		out = append(out, '/')
	}
	return append(out, t[end:]...), true, nil
}

// nextSegment returns the segment s starts with and whether another follows.
func nextSegment(s []byte) ([]byte, bool) {
	if i := bytes.IndexByte(s, '/'); i >= 0 {
		return s[:i], true
	}
	return s, false
}

// dotSegment returns 1 for ".", 2 for ".." (either dot possibly written
// %2e or %2E), 0 for any other segment.
func dotSegment(seg []byte) int {
	n := 0
	for i := 0; i < len(seg); i++ {
		switch {
		case seg[i] == '.':
		case seg[i] == '%' && i+2 < len(seg) && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 2
		default:
			return 0
		}
		if n++; n > 2 {
			return 0
		}
	}
	return n
}

// hidesDotSegment reports whether seg, split at %2F and %5C, holds a dot segment.
func hidesDotSegment(seg []byte) bool {
	from := 0
	for i := 0; i+2 < len(seg); i++ {
		if seg[i] == '%' && ((seg[i+1] == '2' && (seg[i+2] == 'f' || seg[i+2] == 'F')) || (seg[i+1] == '5' && (seg[i+2] == 'c' || seg[i+2] == 'C'))) {
			if dotSegment(seg[from:i]) > 0 {
				return true
			}
			from = i + 3
			i += 2
		}
	}
	return from > 0 && dotSegment(seg[from:]) > 0
}
