package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http/httputil"
	"testing"
)

// chunkedUpstream is rawUpstream for requests with a chunked body: it reads
// each body (through net/http's decoder) before answering.
func chunkedUpstream(tb testing.TB) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n")
	return serveRaw(tb, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if !skipHead(br) {
				return
			}
			if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(br)); err != nil {
				return
			}
			if !skipHead(br) { // the trailer
				return
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// BenchmarkProxyChunked is BenchmarkProxy for a POST with a small chunked
// body (two chunks, an extension, a trailer), the edge decoding it and
// framing it anew towards the upstream.
func BenchmarkProxyChunked(b *testing.B) {
	up := chunkedUpstream(b)
	tb := buildTable(b, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	h := startProxy(b, tb, nil)
	req := []byte("POST /bench HTTP/1.1\r\nHost: edge\r\nUser-Agent: bench\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"10;name=value\r\n0123456789abcdef\r\n20\r\n0123456789abcdef0123456789abcdef\r\n0\r\nX-Checksum: 1\r\n\r\n")
	runClients(b, h.addr, "acme", func() []byte { return req })
}

// skipHead reads a message head from br; false means the peer went away.
func skipHead(br *bufio.Reader) bool {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false
		}
		if len(line) <= 2 {
			return true
		}
	}
}
