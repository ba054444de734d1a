package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestConnectFailureTriesNextEndpoint(t *testing.T) {
	be := backend(t, "alive")
	// Two dead endpoints in the edge's own region and the live one further away:
	// every request must fail over to it.
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
		"dead1=http://" + closedAddr(t), "dead2=http://" + closedAddr(t), "alive@eu-west=" + be.URL,
	}})
	h := startProxy(t, tb, nil)
	c := client(t)
	for i := range 20 {
		resp, b := h.do(t, c, "POST", "acme", "/", strings.NewReader("payload"))
		if resp.StatusCode != 200 || b != "alive POST / body=7" || resp.Header.Get("X-Edge-Endpoint") != "alive@eu-west" {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, b, resp.Header)
		}
	}
	// Each dead endpoint is dialled until it trips locally (2 refusals by
	// default) and then skipped: far fewer dials than requests.
	if n := h.metrics.dialErrors.Load(); n < 4 || n >= 20 {
		t.Fatalf("%d dial errors counted, want 4 up to the local trips and then none", n)
	}
}

// swallower reads a request head and its body, and hangs up without
// answering: the request reached an upstream and may have been acted on.
func swallower(t *testing.T, seen *atomic.Int32) string {
	return serveRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		seen.Add(1)
	})
}

func TestRequestThatReachedAnUpstreamIsNotRetried(t *testing.T) {
	var swallowed, served atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer other.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
		"swallow=" + swallower(t, &swallowed), "other@eu-west=" + other.URL,
	}})
	h := startProxy(t, tb, nil)
	c := client(t)
	for _, body := range []string{"small", strings.Repeat("x", 1<<20)} {
		if resp, _ := h.do(t, c, "POST", "acme", "/pay", strings.NewReader(body)); resp.StatusCode != 502 {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
	}
	poll(t, "both POSTs swallowed", func() bool { return swallowed.Load() == 2 })
	if served.Load() != 0 {
		t.Fatalf("a POST whose body was sent was resent to another endpoint %d times", served.Load())
	}
}

// TestStalePooledConnectionIsReplaced: an upstream that closes keep-alive
// connections once idle (without having said so) leaves dead connections in
// the pool; requests, with or without a body, must still all succeed and
// reach it exactly once.
func TestStalePooledConnectionIsReplaced(t *testing.T) {
	readModes(t, testStalePooledConnectionIsReplaced)
}

func testStalePooledConnectionIsReplaced(t *testing.T, mode func(*Config)) {
	var requests, closed atomic.Int32
	up := serveRaw(t, func(c net.Conn) {
		// Count the close only once it happened: counting it first let the
		// test reuse a connection whose close was still to come, and then a
		// POST that already went out rightly gets 502 instead of a resend.
		defer func() { c.Close(); closed.Add(1) }()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		requests.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	h := startProxy(t, tb, mode)
	c := client(t)
	for i := range 30 {
		// The upstream has hung up on every connection so far: the pooled one is dead.
		poll(t, "upstream idle close", func() bool { return closed.Load() == int32(i) })
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", "data"
		}
		if resp, b := h.do(t, c, method, "acme", "/", strings.NewReader(body)); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("%s %d: %d %q", method, i, resp.StatusCode, b)
		}
	}
	if requests.Load() != 30 {
		t.Fatalf("upstream saw %d requests, want exactly 30", requests.Load())
	}
}

// TestHungUpstreamGets504AndIsNotRetried: an upstream that stops answering on
// a pooled connection must cost the client a 504 after the response timeout,
// and the request must not be resent (to it or to another endpoint): it may
// be acting on it.
func TestHungUpstreamGets504AndIsNotRetried(t *testing.T) {
	var requests, served atomic.Int32
	up := serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			requests.Add(1)
			if i == 0 {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			io.Copy(io.Discard, br) // hang: hold the connection, never answer
			return
		}
	})
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer other.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"hang=" + up, "other@eu-west=" + other.URL}})
	h := startProxy(t, tb, func(c *Config) { c.ResponseTimeout = 200 * time.Millisecond })
	c := client(t)
	if resp, b := h.do(t, c, "POST", "acme", "/first", strings.NewReader("a")); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("first request: %d %q", resp.StatusCode, b)
	}
	resp, b := h.do(t, c, "POST", "acme", "/second", strings.NewReader("b")) // on the pooled connection
	if resp.StatusCode != 504 || !strings.Contains(b, "upstream timed out") {
		t.Fatalf("hung upstream: %d %q, want 504", resp.StatusCode, b)
	}
	if n := requests.Load(); n != 2 {
		t.Fatalf("upstream saw %d requests, want 2 (no resend)", n)
	}
	if n := served.Load(); n != 0 {
		t.Fatalf("the timed-out POST was resent to another endpoint %d times", n)
	}
}
