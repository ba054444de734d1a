package proxy

import (
	"bufio"
	"bytes"
)

// Chunked bodies (RFC 9112 7.1) are decoded strictly and framed anew by the
// edge: the peer's chunk-size lines, extensions and trailer never reach the
// other side as sent, only the data does, in chunks the edge writes (as
// httputil.ReverseProxy does through net/http's chunked writer). Whatever
// the edge forwards is then well-formed for any parser downstream, however
// lax, and whatever it accepts net/http's chunked reader accepts too
// (FuzzChunkedBody), so no peer can frame a body one way for the edge and
// another way for the upstream (CVE-2025-22871 and its kin).
//
//   - Every line (chunk size, trailer field) ends in CRLF; a bare LF ends
//     nothing, a CR anywhere else is refused.
//   - The size is 1 to 16 hex digits, nothing before it, and below 2^60.
//   - Extensions follow the grammar (BWS ";" BWS token [BWS "=" BWS (token /
//     quoted-string)]), with no BWS before the first ";", and are dropped. Bounded per line, as net/http: a
//     chunk-size line with its extensions fits the connection's 4 KiB
//     buffer; and per body, net/http's budget of non-data bytes: 16 KiB
//     beyond 16 bytes per chunk plus twice its data.
//   - The chunk's data is followed by CRLF, exactly.
//   - Trailer fields are header fields (token name, colon, field-vchars, no
//     obs-fold), at most maxTrailerFields of them in maxTrailerBytes. A
//     request's are dropped (they could carry nothing an upstream may rely
//     on that the edge checked); a response's go to an HTTP/1.1 client,
//     except framing and hop-by-hop ones.

const (
	// maxChunkLine bounds a chunk-size line with its extensions and CRLF:
	// the connections' buffer (net/http allows 4095 bytes before CRLF).
	maxChunkLine = bufSize
	// maxChunkExcess is net/http's budget of non-data bytes in a body.
	maxChunkExcess = 16 << 10
	// maxChunkSize bounds one chunk's size, far beyond any real body.
	maxChunkSize = 1 << 60
	// maxTrailerFields and maxTrailerBytes bound a trailer.
	maxTrailerFields = 64
	maxTrailerBytes  = 8 << 10
)

// chunkError is a specific way a chunked body is malformed; each is
// errBadChunk for errors.Is. (Constants: reporting one allocates nothing.)
type chunkError string

func (e chunkError) Error() string        { return "malformed chunked encoding: " + string(e) }
func (e chunkError) Is(target error) bool { return target == errBadChunk }

const (
	errChunkBareLF   chunkError = "line ends in a bare LF"
	errChunkCR       chunkError = "CR inside a line"
	errChunkLineLong chunkError = "chunk-size line too long"
	errChunkSize     chunkError = "invalid chunk size"
	errChunkTooLarge chunkError = "chunk size too large"
	errChunkExt      chunkError = "invalid chunk extension"
	errChunkExcess   chunkError = "too much non-data"
	errChunkDataEnd  chunkError = "chunk data not followed by CRLF"
	errTrailerField  chunkError = "invalid trailer field"
	errTrailerLarge  chunkError = "trailer too large"
)

// chunkMode says what copyChunked writes of the body it reads.
type chunkMode uint8

const (
	// chunkData writes the data only (an HTTP/1.0 client, a held body).
	chunkData chunkMode = iota
	// chunkReframe writes the data in the edge's own chunks, trailer dropped.
	chunkReframe
	// chunkReframeTrailer is chunkReframe with the trailer's fields
	// forwarded (once validated), but for framing and hop-by-hop ones.
	chunkReframeTrailer
)

// chunkState is what checking a body's lines needs to remember.
type chunkState struct {
	excess                      int64
	trailerFields, trailerBytes int
}

// lineContent returns line (as read, up to its LF) without its CRLF.
func lineContent(line []byte) ([]byte, error) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, errChunkBareLF
	}
	p := line[:n-2]
	if bytes.IndexByte(p, '\r') >= 0 {
		return nil, errChunkCR
	}
	return p, nil
}

// chunkLine parses a chunk-size line (with its CRLF) and returns the size.
func (s *chunkState) chunkLine(line []byte) (int64, error) {
	if len(line) > maxChunkLine {
		return 0, errChunkLineLong
	}
	p, err := lineContent(line)
	if err != nil {
		return 0, err
	}
	var n uint64
	i := 0
	for ; i < len(p); i++ {
		d := unhex(p[i])
		if d < 0 {
			break
		}
		if i == 16 {
			return 0, errChunkTooLarge
		}
		n = n<<4 | uint64(d)
	}
	if i == 0 {
		return 0, errChunkSize
	}
	if n >= maxChunkSize {
		return 0, errChunkTooLarge
	}
	if !validChunkExt(p[i:]) {
		return 0, errChunkExt
	}
	// net/http's rule (chunkedReader.beginChunk): 16 bytes of overhead per
	// chunk and twice its data are free, 16 KiB beyond that in all.
	s.excess += int64(len(line)) - 16 - 2*int64(n)
	s.excess = max(s.excess, 0)
	if s.excess > maxChunkExcess {
		return 0, errChunkExcess
	}
	return int64(n), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// validChunkExt reports whether ext (what follows the size) is a list of
// chunk extensions, RFC 9112 7.1.1, or nothing.
// The first ';' follows the size at once: RFC 9112 allows BWS there, but
// net/http refuses it ("invalid byte in chunk length"), and what the edge
// accepts net/http must accept too.
func validChunkExt(ext []byte) bool {
	for first := true; len(ext) > 0; first = false {
		if !first {
			ext = skipBWS(ext)
		}
		if len(ext) == 0 || ext[0] != ';' {
			return false
		}
		ext = skipBWS(ext[1:])
		n := tokenLen(ext)
		if n == 0 {
			return false
		}
		ext = ext[n:]
		if rest := skipBWS(ext); len(rest) > 0 && rest[0] == '=' {
			rest = skipBWS(rest[1:])
			if len(rest) > 0 && rest[0] == '"' {
				n = quotedLen(rest)
			} else {
				n = tokenLen(rest)
			}
			if n <= 0 {
				return false
			}
			ext = rest[n:]
		}
	}
	return true
}

func skipBWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// tokenLen is the length of the token b starts with (RFC 9110 5.6.2).
func tokenLen(b []byte) int {
	for i, c := range b {
		if !isTchar(c) {
			return i
		}
	}
	return len(b)
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// quotedLen is the length of the quoted-string b starts with (RFC 9110
// 5.6.4), or -1 if it does not start with a whole one.
func quotedLen(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i++; i == len(b) || (b[i] < ' ' && b[i] != '\t') || b[i] == 0x7f {
				return -1
			}
		case (c < ' ' && c != '\t') || c == 0x7f:
			return -1
		}
	}
	return -1
}

// trailerLine checks a trailer line (with its CRLF): done means it was
// the empty line ending the body; otherwise name is the field's name.
func (s *chunkState) trailerLine(line []byte) (name []byte, done bool, err error) {
	p, err := lineContent(line)
	if err != nil {
		return nil, false, err
	}
	if len(p) == 0 {
		return nil, true, nil
	}
	s.trailerFields++
	s.trailerBytes += len(line)
	if s.trailerFields > maxTrailerFields || s.trailerBytes > maxTrailerBytes {
		return nil, false, errTrailerLarge
	}
	colon := bytes.IndexByte(p, ':')
	if colon <= 0 || tokenLen(p[:colon]) != colon || !validFieldValue(p[colon+1:]) {
		return nil, false, errTrailerField // obs-fold starts with SP or HTAB: no token
	}
	return p[:colon], false, nil
}

// forwardTrailer reports whether a response's trailer field goes on to the
// client: not one that frames a message or is hop-by-hop.
func forwardTrailer(name []byte) bool { return classify(name) == hOther }

// writeChunkSize writes the line starting a chunk of size n (byte by
// byte: a slice handed to bufio.Writer.Write escapes, a byte does not).
func writeChunkSize(dst *bufio.Writer, n int64) error {
	shift := 0
	for n>>shift >= 16 {
		shift += 4
	}
	for ; shift >= 0; shift -= 4 {
		dst.WriteByte(hexDigits[n>>shift&15])
	}
	return writeString(dst, "\r\n")
}

func writeString(dst *bufio.Writer, s string) error {
	if _, err := dst.WriteString(s); err != nil {
		return dstErr(err)
	}
	return nil
}

// copyChunked decodes a chunked body from src, up to and including its
// trailer, and writes it to dst as mode says. The data moves as copyN
// moves it, through the connections' buffers; the framing is checked in
// place there.
func (c *copier) copyChunked(dst *bufio.Writer, src *bufio.Reader, mode chunkMode) error {
	var st chunkState
	for {
		line, err := c.readLine(dst, src)
		if err != nil {
			return err
		}
		size, err := st.chunkLine(line)
		if err != nil {
			return srcErr(err)
		}
		if size == 0 {
			break
		}
		if mode != chunkData {
			if err := writeChunkSize(dst, size); err != nil {
				return err
			}
		}
		if err := c.copyN(dst, src, size); err != nil {
			return err
		}
		if err := c.chunkDataEnd(dst, src); err != nil {
			return err
		}
		if mode != chunkData {
			if err := writeString(dst, "\r\n"); err != nil {
				return err
			}
		}
	}
	if mode != chunkData {
		if err := writeString(dst, "0\r\n"); err != nil {
			return err
		}
	}
	for {
		line, err := c.readLine(dst, src)
		if err != nil {
			return err
		}
		name, done, err := st.trailerLine(line)
		if err != nil {
			return srcErr(err)
		}
		if done {
			break
		}
		if mode == chunkReframeTrailer && forwardTrailer(name) {
			if _, err := dst.Write(line); err != nil {
				return dstErr(err)
			}
		}
	}
	if mode != chunkData {
		return writeString(dst, "\r\n")
	}
	return nil
}

// chunkDataEnd consumes the CRLF that must follow a chunk's data.
func (c *copier) chunkDataEnd(dst *bufio.Writer, src *bufio.Reader) error {
	if src.Buffered() < 2 {
		if err := c.flush(dst); err != nil {
			return err
		}
		c.beforeRead()
	}
	b, err := src.Peek(2)
	if len(b) > 0 && b[0] != '\r' || len(b) > 1 && b[1] != '\n' {
		return srcErr(errChunkDataEnd)
	}
	if err != nil {
		return srcErr(err)
	}
	src.Discard(2)
	return nil
}

// scanChunked checks the chunked body at the start of b as copyChunked
// would. If b holds all of it, n is its length and, with dst, it was
// written there re-chunked (its trailer dropped); n is -1 if b holds only
// the start of a body that is well-formed so far.
func scanChunked(b []byte, dst *bufio.Writer) (n int, err error) {
	var st chunkState
	i := 0
	nextLine := func() ([]byte, error) {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 || j >= bufSize {
			if len(b)-i >= bufSize {
				return nil, errChunkLineLong // as a bufio.Reader of bufSize would find
			}
			return nil, nil
		}
		line := b[i : i+j+1]
		i += j + 1
		return line, nil
	}
	for {
		line, err := nextLine()
		if line == nil {
			return -1, err
		}
		size, err := st.chunkLine(line)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			break
		}
		if int64(len(b)-i) < size+2 {
			return -1, nil
		}
		data := b[i : i+int(size)]
		if i += int(size); b[i] != '\r' || b[i+1] != '\n' {
			return 0, errChunkDataEnd
		}
		i += 2
		if dst != nil {
			writeChunkSize(dst, size)
			dst.Write(data)
			dst.WriteString("\r\n")
		}
	}
	for {
		line, err := nextLine()
		if line == nil {
			return -1, err
		}
		_, done, err := st.trailerLine(line)
		if err != nil {
			return 0, err
		}
		if done {
			break
		}
	}
	if dst != nil {
		dst.WriteString("0\r\n\r\n")
	}
	return i, nil
}
