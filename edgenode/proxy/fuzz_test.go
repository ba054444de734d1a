package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/edgecell/edgecell/hmacsig"
)

// FuzzRequestHead feeds arbitrary bytes to the request-head reader and
// parser. The edge faces the internet, so besides never panicking, whatever
// it accepts must be framed the way net/http frames it: a disagreement on
// where a body ends is a request-smuggling hole between the edge and an
// upstream running a standard server.
func FuzzRequestHead(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: t1\r\n\r\n",
		"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n Folded: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
		// Head limits and hygiene (headlimits_test.go).
		"GET / HTTP/1.1\r\nHost: a\r\nX_Edge_Key_Id: k1\r\n\r\n",
		"GET /api/../admin HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /api/%2e%2E/admin?x=/../y HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /../x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a/..%2fb/./c/.. HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://h/a/b/../../c HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: 1\r\n", 100) + "\r\n",
		"GET /" + strings.Repeat("a", 8<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r request
		r.reset()
		if err := r.readHead(bufio.NewReader(bytes.NewReader(data)), 64<<10); err != nil {
			return
		}
		lim := HeadLimits{}.withDefaults()
		if err := r.parse(&lim); err != nil {
			return
		}
		// RFC 9112 2.2 lets a server skip empty lines before the request
		// line; we do, net/http does not.
		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(bytes.TrimLeft(data, "\r\n"))))
		if err != nil {
			// We accepted what net/http refuses. Tolerated only where
			// net/http is stricter about things that do not change framing.
			if strings.Contains(err.Error(), "malformed HTTP version") || strings.Contains(err.Error(), "invalid method") ||
				strings.Contains(err.Error(), "invalid URI") || strings.Contains(err.Error(), "parse ") {
				return
			}
			t.Fatalf("edge accepted a head net/http refuses (%v):\n%q", err, data)
		}
		if len(r.fields) > lim.MaxHeaderCount || len(r.connTokens) > lim.MaxConnectionTokens || len(std.RequestURI) > lim.MaxRequestTarget {
			t.Fatalf("over a limit: %d fields, %d Connection tokens, target of %d bytes:\n%q", len(r.fields), len(r.connTokens), len(std.RequestURI), data)
		}
		if _, changed, err := hmacsig.NormalizeTarget(nil, r.target); changed || err != nil {
			t.Fatalf("dot segment left in %q (normalised again: changed %v, %v):\n%q", r.target, changed, err, data)
		}
		if string(r.method) != std.Method {
			t.Fatalf("method %q, net/http %q:\n%q", r.method, std.Method, data)
		}
		stdChunked := len(std.TransferEncoding) > 0
		if r.chunked != stdChunked {
			t.Fatalf("chunked=%v, net/http transfer-encoding %v:\n%q", r.chunked, std.TransferEncoding, data)
		}
		if !r.chunked {
			want := max(std.ContentLength, 0)
			if got := max(r.contentLength, 0); got != want {
				t.Fatalf("content length %d, net/http %d:\n%q", got, want, data)
			}
		}
	})
}
