package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// countingUpstream is a net/http upstream that counts the requests it
// parses and remembers their paths: a smuggled request shows as a second
// one, or as its path.
type countingUpstream struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	paths    []string
}

func newCountingUpstream(t *testing.T) *countingUpstream {
	u := &countingUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		u.mu.Lock()
		u.paths = append(u.paths, r.URL.Path)
		u.mu.Unlock()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // cut short: the edge gave up on the body
		}
		io.WriteString(w, "body="+string(body))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *countingUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.paths...)
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\n\r\n"

// TestChunkedSmugglingCorpus sends malformed or ambiguous request framing
// through a real edge to a real net/http upstream over sockets. Each gets
// its refusal, the connection closes, and the upstream never sees the
// request hidden behind the fault (nor more than one request).
func TestChunkedSmugglingCorpus(t *testing.T) {
	const head = "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"bare LF after size", head + "5\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"bare LF after data", head + "5\r\nhello\n0\r\n\r\n" + smuggled, 400},
		{"bare LF ends body", head + "5\r\nhello\r\n0\n\n" + smuggled, 400},
		{"bare CR in size line", head + "5\rhello\r\n0\r\n\r\n" + smuggled, 400},
		{"bare CR in extension", head + "5;a=\rb\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"LF inside extension (CVE-2025-22871)", head + "5;\nX\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"extension off the grammar", head + "5;a b\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"extension unterminated quote", head + "5;a=\"b\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"oversized extension", head + "5;a=" + strings.Repeat("x", 5000) + "\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"extensions over the body budget", head + strings.Repeat("1;a="+strings.Repeat("x", 1000)+"\r\nx\r\n", 20) + "0\r\n\r\n" + smuggled, 400},
		{"invalid hex", head + "5g\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"0x prefix", head + "0x5\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"sign", head + "+5\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"leading space", head + " 5\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"trailing space", head + "5 \r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"size overflow", head + "10000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"size near 2^64", head + "ffffffffffffffff\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"missing CRLF after data", head + "5\r\nhelloXX0\r\n\r\n" + smuggled, 400},
		{"data longer than size", head + "3\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"bare CR in trailer", head + "5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n" + smuggled, 400},
		{"folded trailer", head + "5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n" + smuggled, 400},
		{"trailer name not a token", head + "5\r\nhello\r\n0\r\nX Y: a\r\n\r\n" + smuggled, 400},
		{"trailer without colon", head + "5\r\nhello\r\n0\r\n" + smuggled + "\r\n", 400},
		{"CL.TE", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX" + smuggled, 400},
		{"TE.CL", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggled, 400},
		{"duplicate TE", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"TE list", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"TE not chunked", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, 501},
		{"TE with vertical tab", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE obs-fold", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, 501}, // the empty coding is refused first
		{"obs-fold", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nX-A: b\r\n c\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE in HTTP/1.0", "POST /p HTTP/1.0\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"duplicate CL", "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello" + smuggled, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newCountingUpstream(t)
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up.srv.URL}})
			h := startProxy(t, tb, nil)
			c := dialRaw(t, h.addr)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			// The connection closes after the refusal: no second answer.
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				t.Fatalf("more after the refusal: %q", rest)
			}
			// A fault that came with the head is refused before anything
			// goes upstream; one further on (past the connection's
			// buffer) cuts the one request off there.
			if n := up.requests.Load(); n > 1 || n == 1 && len(tc.req) <= bufSize {
				t.Fatalf("upstream saw %d requests: %v", n, up.seen())
			}
			for _, p := range up.seen() {
				if p != "/p" {
					t.Fatalf("upstream saw %s", p)
				}
			}
		})
	}
}

// TestChunkedMalformedMidStream: a body that turns malformed after the
// upstream has its start is cut off there; the client gets 400 and the
// upstream one request, never the one hidden behind the fault.
func TestChunkedMalformedMidStream(t *testing.T) {
	readModes(t, func(t *testing.T, mode func(*Config)) {
		up := newCountingUpstream(t)
		tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up.srv.URL}})
		h := startProxy(t, tb, mode)
		c := dialRaw(t, h.addr)
		io.WriteString(c, "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		poll(t, "upstream has the request", func() bool { return up.requests.Load() == 1 })
		io.WriteString(c, "5\nworld\r\n0\r\n\r\n"+smuggled)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
		if n := up.requests.Load(); n != 1 {
			t.Fatalf("upstream saw %d requests: %v", n, up.seen())
		}
	})
}

// captureUpstream answers every chunked request with 200 after reading its
// body up to "0\r\n\r\n", and sends the bytes it got on got.
func captureUpstream(t *testing.T, got chan<- []byte) string {
	return serveRaw(t, func(c net.Conn) {
		var buf []byte
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			buf = append(buf, b[:n]...)
			if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 && bytes.HasSuffix(buf[i:], []byte("\r\n0\r\n\r\n")) {
				break
			}
			if err != nil {
				return
			}
		}
		got <- buf
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
}

// TestChunkedReframed: what reaches the upstream is the edge's own chunk
// framing of the decoded data: no extensions, no trailer, lowercase hex
// without padding, whether the body came with the head or streamed.
func TestChunkedReframed(t *testing.T) {
	for _, streamed := range []bool{false, true} {
		got := make(chan []byte, 1)
		up := captureUpstream(t, got)
		tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
		h := startProxy(t, tb, nil)
		c := dialRaw(t, h.addr)
		body := "005;a=b;c=\"q \\\" x\"\r\nhello\r\nA; big\r\n0123456789\r\n0;last\r\nX-Trailer: t\r\n\r\n"
		if streamed {
			body = "1000\r\n" + strings.Repeat("y", 0x1000) + "\r\n" + body
		}
		io.WriteString(c, "POST /p HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("streamed=%v: %v %v", streamed, resp, err)
		}
		raw := <-got
		_, framing, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		want := "5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n"
		if streamed {
			want = "1000\r\n" + strings.Repeat("y", 0x1000) + "\r\n" + want
		}
		if string(framing) != want {
			t.Fatalf("streamed=%v: upstream got %q, want %q", streamed, framing, want)
		}
	}
}

// TestChunkedResponseStrict: an upstream's response with a bare LF in its
// chunk framing is cut off at the fault, and its connection is not pooled
// (the next request comes on a new one), so what followed the fault can
// never be read as the answer to the next request.
func TestChunkedResponseStrict(t *testing.T) {
	var conns atomic.Int64
	up := serveRaw(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			if !skipHead(br) {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
		}
	})
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	h := startProxy(t, tb, nil)
	cl := client(t)
	for i := 0; i < 2; i++ {
		resp, err := cl.Do(h.request("GET", "acme", "/", nil))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || strings.Contains(string(b), "smuggled") {
			t.Fatalf("request %d: body %q err %v, want it cut short", i, b, err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d upstream connections for 2 requests, want 2 (none reused after a malformed body)", n)
	}
}

// TestChunkedResponseTrailers: an HTTP/1.1 client gets a response's
// trailer fields, re-chunked, but not framing ones.
func TestChunkedResponseTrailers(t *testing.T) {
	up := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if !skipHead(br) {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n5;x=y\r\nhello\r\n0\r\nGrpc-Status: 0\r\nContent-Length: 99\r\n\r\n")
	})
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	h := startProxy(t, tb, nil)
	resp, err := client(t).Do(h.request("GET", "acme", "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "hello" {
		t.Fatalf("body %q err %v", b, err)
	}
	if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Content-Length") != "" {
		t.Fatalf("trailer %v", resp.Trailer)
	}
}
