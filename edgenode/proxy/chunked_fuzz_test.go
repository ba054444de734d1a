package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httputil"
	"net/textproto"
	"sync"
	"testing"
)

// decodeChunked runs the edge's streaming decoder over data as a body read
// from a connection (a bufio.Reader of the connections' size) in mode and
// returns what it wrote.
func decodeChunked(data []byte, mode chunkMode) ([]byte, error) {
	var out bytes.Buffer
	bufs := &sync.Pool{New: func() any { return new([copyBufSize]byte) }}
	cp := copier{bufs: bufs}
	dst := bufio.NewWriterSize(&out, bufSize)
	err := cp.copyChunked(dst, bufio.NewReaderSize(bytes.NewReader(data), bufSize), mode)
	cp.release()
	dst.Flush()
	return out.Bytes(), err
}

// stdChunked decodes data as net/http does a chunked body: the chunks with
// httputil.NewChunkedReader, then the trailer as a MIME header.
func stdChunked(data []byte) ([]byte, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	b, err := io.ReadAll(httputil.NewChunkedReader(br))
	if err != nil {
		return nil, err
	}
	if _, err := textproto.NewReader(br).ReadMIMEHeader(); err != nil {
		return nil, err
	}
	return b, nil
}

// FuzzChunkedBody compares the edge's chunked decoder with net/http's: the
// edge may refuse more (a bare LF, junk after the size, extensions off the
// grammar), but whatever it accepts net/http must accept too and decode to
// the same bytes, or the edge and a standard upstream disagree on where a
// body ends. It also checks that the edge's own framing (what the upstream
// gets) decodes back to the same data, and that the in-buffer scanner
// (bodies sent with the head) agrees with the streaming decoder.
func FuzzChunkedBody(f *testing.F) {
	for _, seed := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b;c=\"d \\\" e\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"5\r\nhello\n0\r\n\r\n",
		"5\rhello\r\n0\r\n\r\n",
		"5;a=\rb\r\nhello\r\n0\r\n\r\n",
		"5 \r\nhello\r\n0\r\n\r\n",
		"0x5\r\nhello\r\n0\r\n\r\n",
		"fffffffffffffffff\r\nx\r\n0\r\n\r\n",
		"5\r\nhelloXX0\r\n\r\n",
		"0\r\nX: a\rb\r\n\r\n",
		"0\r\n folded\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeChunked(data, chunkData)
		if n, serr := scanChunked(data, nil); len(data) <= bufSize && (serr == nil) != (n < 0 || err == nil) {
			t.Fatalf("scanner n=%d err=%v, decoder err=%v:\n%q", n, serr, err, data)
		}
		if err != nil {
			return
		}
		want, stdErr := stdChunked(data)
		if stdErr != nil {
			t.Fatalf("edge accepted a body net/http refuses (%v):\n%q", stdErr, data)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("edge decoded %q, net/http %q:\n%q", got, want, data)
		}
		framed, err := decodeChunked(data, chunkReframe)
		if err != nil {
			t.Fatalf("reframing failed (%v):\n%q", err, data)
		}
		if again, err := stdChunked(framed); err != nil || !bytes.Equal(again, got) {
			t.Fatalf("edge's framing %q decodes to %q (%v), want %q", framed, again, err, got)
		}
		if n, _ := scanChunked(data, nil); n > 0 {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			scanChunked(data[:n], w)
			w.Flush()
			if !bytes.Equal(out.Bytes(), framed) {
				t.Fatalf("scanner framed %q, decoder %q", out.Bytes(), framed)
			}
		}
	})
}
