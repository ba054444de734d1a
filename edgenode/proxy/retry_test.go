package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// decodeError decodes the edge's JSON error body.
func decodeError(t testing.TB, body string) errBody {
	t.Helper()
	var eb errBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return eb
}

// countingBackend is backend that also counts the requests it served.
func countingBackend(t testing.TB, name string, served *atomic.Int32) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		served.Add(1)
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name+" "+r.Method+" body="+string(body))
	}))
	t.Cleanup(s.Close)
	return s
}

// debugDo sends method with X-Edge-Debug: 1 and returns the response, its
// body and X-Edge-Route.
func (h *harness) debugDo(t testing.TB, c *http.Client, method, key string, body io.Reader) (*http.Response, string, string) {
	t.Helper()
	req := h.request(method, key, "/", body)
	req.Header.Set("X-Edge-Debug", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), resp.Header.Get("X-Edge-Route")
}

// A refused connection sent nothing anywhere: the request, whatever its
// method and body, goes to the next endpoint, and the body arrives whole.
func TestDialFailureRetriesOnAnotherEndpoint(t *testing.T) {
	var served atomic.Int32
	alive := countingBackend(t, "alive", &served)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
		"dead=http://" + closedAddr(t), "alive@eu-west=" + alive.URL,
	}})
	h := startProxy(t, tb, nil)
	resp, body, route := h.debugDo(t, client(t), "POST", "acme", strings.NewReader("payload"))
	if resp.StatusCode != 200 || body != "alive POST body=payload" || resp.Header.Get("X-Edge-Endpoint") != "alive@eu-west" {
		t.Fatalf("POST after a refused connection: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if route != "failover us-east->eu-west: retried after dead unreachable" {
		t.Fatalf("X-Edge-Route %q", route)
	}
	if n := h.metrics.retries.Load(); n != 1 {
		t.Fatalf("%d retries counted, want 1", n)
	}
}

// countingDialer dials for real and counts the attempts per address.
type countingDialer struct {
	mu    sync.Mutex
	dials map[string]int
}

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	if d.dials == nil {
		d.dials = map[string]int{}
	}
	d.dials[addr]++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *countingDialer) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, v := range d.dials {
		n += v
	}
	return n
}

// With every endpoint down, a request costs two dials, not one per endpoint,
// and the client learns why.
func TestRetryBudgetIsOneRetry(t *testing.T) {
	var served atomic.Int32
	alive := countingBackend(t, "alive", &served)
	tb := buildTable(t, 1, "", map[string]string{"down": "c1", "far": "c2"},
		cellSpec{"c1", []string{"d1=http://" + closedAddr(t), "d2=http://" + closedAddr(t), "d3@eu-west=http://" + closedAddr(t)}},
		// The live endpoint comes after two dead ones: the budget is spent first.
		cellSpec{"c2", []string{"x1=http://" + closedAddr(t), "x2=http://" + closedAddr(t), "alive@eu-west=" + alive.URL}})
	d := &countingDialer{}
	h := startProxy(t, tb, func(c *Config) { c.DialContext = d.DialContext })
	c := client(t)
	for _, key := range []string{"down", "far"} {
		before := d.total()
		resp, body, route := h.debugDo(t, c, "GET", key, nil)
		if resp.StatusCode != 502 {
			t.Fatalf("%s: status %d, want 502", key, resp.StatusCode)
		}
		if eb := decodeError(t, body); eb.Error != "no endpoint reachable" || eb.Reason != "upstream unreachable after 2 attempts" {
			t.Fatalf("%s: 502 body %+v", key, eb)
		}
		if route != "none: upstream unreachable after 2 attempts" {
			t.Fatalf("%s: X-Edge-Route %q", key, route)
		}
		if n := d.total() - before; n != 2 {
			t.Fatalf("%s: %d dials, want 2 (one retry)", key, n)
		}
	}
	if served.Load() != 0 {
		t.Fatal("the third endpoint was reached despite the budget")
	}
	if n := h.metrics.dialErrors.Load(); n != 4 {
		t.Fatalf("%d dial errors counted, want 4", n)
	}
}

// Dead endpoints cost requests 502s only until they trip locally; after
// that they are skipped (not attempts) and the live one serves.
func TestDeadEndpointsTripThenAreSkipped(t *testing.T) {
	be := backend(t, "alive")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
		"dead1=http://" + closedAddr(t), "dead2=http://" + closedAddr(t), "alive@eu-west=" + be.URL,
	}})
	h := startProxy(t, tb, nil)
	c := client(t)
	for i := range 20 {
		resp, b := h.do(t, c, "POST", "acme", "/", strings.NewReader("payload"))
		// Both dead endpoints are in the own region, tried first: the first
		// two requests spend their budget on them, and with the default
		// local_connect_failures (2) that trips both.
		if i < 2 {
			if eb := decodeError(t, b); resp.StatusCode != 502 || eb.Reason != "upstream unreachable after 2 attempts" {
				t.Fatalf("request %d: %d %q, want 502 until the local trips", i, resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != 200 || b != "alive POST / body=7" || resp.Header.Get("X-Edge-Endpoint") != "alive@eu-west" {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, b, resp.Header)
		}
	}
	if n := h.metrics.dialErrors.Load(); n != 4 {
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

// A fresh connection that the upstream closes after reading the request:
// an idempotent request without a body goes once more, to another
// endpoint; anything else gets 502 and reached an upstream exactly once.
func TestRequestThatReachedAnUpstream(t *testing.T) {
	tests := []struct {
		method, body string
		retried      bool
	}{
		{"POST", "small", false},
		{"POST", strings.Repeat("x", 1<<20), false},
		{"POST", "", false},
		{"PATCH", "", false},
		{"PUT", "new state", false}, // idempotent, but its body was sent
		{"GET", "", true},
		{"HEAD", "", true},
		{"OPTIONS", "", true},
		{"PUT", "", true},
		{"DELETE", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.method+"/"+map[bool]string{true: "retried", false: "not-retried"}[tc.retried], func(t *testing.T) {
			var swallowed, served atomic.Int32
			other := countingBackend(t, "other", &served)
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
				"swallow=" + swallower(t, &swallowed), "other@eu-west=" + other.URL,
			}})
			h := startProxy(t, tb, nil)
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, b, route := h.debugDo(t, client(t), tc.method, "acme", body)
			poll(t, "the request swallowed", func() bool { return swallowed.Load() == 1 })
			if !tc.retried {
				if eb := decodeError(t, b); resp.StatusCode != 502 || eb.Error != "upstream failed before responding" {
					t.Fatalf("status %d %q, want 502", resp.StatusCode, b)
				}
				if n := served.Load(); n != 0 {
					t.Fatalf("a %s that reached an upstream was sent to another endpoint (%d times)", tc.method, n)
				}
				return
			}
			if resp.StatusCode != 200 || resp.Header.Get("X-Edge-Endpoint") != "other@eu-west" || served.Load() != 1 {
				t.Fatalf("status %d from %q (other served %d), want 200 from other", resp.StatusCode, resp.Header.Get("X-Edge-Endpoint"), served.Load())
			}
			if route != "failover us-east->eu-west: retried after swallow failed before responding" {
				t.Fatalf("X-Edge-Route %q", route)
			}
			if n := swallowed.Load(); n != 1 {
				t.Fatalf("swallowed %d times, want once", n)
			}
		})
	}
}

// Two upstreams hanging up on a GET: the retry is spent, the third endpoint
// is not tried, and the client learns why.
func TestRetriedRequestFailsAgain(t *testing.T) {
	var swallowed, served atomic.Int32
	other := countingBackend(t, "other", &served)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
		"s1=" + swallower(t, &swallowed), "s2=" + swallower(t, &swallowed), "other@eu-west=" + other.URL,
	}})
	h := startProxy(t, tb, nil)
	resp, b, route := h.debugDo(t, client(t), "GET", "acme", nil)
	eb := decodeError(t, b)
	if resp.StatusCode != 502 || eb.Error != "upstream failed before responding" || eb.Reason != "upstream failed before responding after 2 attempts" {
		t.Fatalf("%d %+v", resp.StatusCode, eb)
	}
	if route != "none: upstream failed before responding after 2 attempts" {
		t.Fatalf("X-Edge-Route %q", route)
	}
	poll(t, "both attempts swallowed", func() bool { return swallowed.Load() == 2 })
	if served.Load() != 0 {
		t.Fatal("a third endpoint was tried")
	}
}

// answersOnce serves connections that answer their first request with 200
// "ok" and, once the second request was read, hand the connection to then
// (it closes when then returns). seen is called with every request read.
func answersOnce(t testing.TB, seen func(*http.Request), then func(net.Conn, *bufio.Reader)) string {
	return serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			seen(req)
			if i > 0 {
				then(c, br)
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
}

// TestReusedConnectionClosedAfterReading: an upstream that reads a request
// on a kept-alive connection and hangs up without answering. A POST sent
// there reached it and is never resent; a GET is resent on a fresh
// connection to the same endpoint, as net/http does.
func TestReusedConnectionClosedAfterReading(t *testing.T) {
	readModes(t, testReusedConnectionClosedAfterReading)
}

func testReusedConnectionClosedAfterReading(t *testing.T, mode func(*Config)) {
	var mu sync.Mutex
	seen := map[string]int{} // method and path -> times received
	// Each connection answers its first request and swallows the second.
	up := answersOnce(t, func(req *http.Request) {
		mu.Lock()
		seen[req.Method+" "+req.URL.Path]++
		mu.Unlock()
	}, func(net.Conn, *bufio.Reader) {})
	received := func(req string) int { mu.Lock(); defer mu.Unlock(); return seen[req] }
	var served atomic.Int32
	other := countingBackend(t, "other", &served)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"up=" + up, "other@eu-west=" + other.URL}})
	h := startProxy(t, tb, mode)
	c := client(t)
	for _, tc := range []struct{ method, body string }{{"POST", "pay"}, {"POST", ""}, {"PATCH", ""}} {
		if resp, b := h.do(t, c, "GET", "acme", "/warm", nil); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("GET /warm: %d %q", resp.StatusCode, b)
		}
		poll(t, "connection pooled", func() bool { return h.srv.IdleUpstreamConns() == 1 })
		path := "/" + strings.ToLower(tc.method) + "-" + tc.body
		resp, b := h.do(t, c, tc.method, "acme", path, strings.NewReader(tc.body)) // on the pooled connection
		if eb := decodeError(t, b); resp.StatusCode != 502 || eb.Error != "upstream failed before responding" {
			t.Fatalf("%s %s: %d %q, want 502", tc.method, path, resp.StatusCode, b)
		}
		if n := received(tc.method + " " + path); n != 1 {
			t.Fatalf("%s %s reached the upstream %d times, want exactly once", tc.method, path, n)
		}
	}
	if served.Load() != 0 {
		t.Fatal("a request that reached an upstream was resent to another endpoint")
	}

	if resp, b := h.do(t, c, "GET", "acme", "/warm", nil); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("GET /warm: %d %q", resp.StatusCode, b)
	}
	poll(t, "connection pooled", func() bool { return h.srv.IdleUpstreamConns() == 1 })
	resp, b := h.do(t, c, "GET", "acme", "/again", nil)
	if resp.StatusCode != 200 || b != "ok" || resp.Header.Get("X-Edge-Endpoint") != "up@us-east" {
		t.Fatalf("GET on a connection closed after reading: %d %q from %s, want 200 from the same endpoint",
			resp.StatusCode, b, resp.Header.Get("X-Edge-Endpoint"))
	}
	if n := received("GET /again"); n != 2 {
		t.Fatalf("GET /again reached the upstream %d times, want 2 (swallowed, then answered on a fresh connection)", n)
	}
	if n := h.metrics.staleRetries.Load(); n != 1 {
		t.Fatalf("%d stale retries counted, want 1", n)
	}
}

// failingConn fails its next write without writing anything once armed,
// the way a write into a connection the peer has reset fails.
type failingConn struct {
	net.Conn
	arm     *atomic.Bool
	partial *atomic.Bool // write half of the bytes before failing
}

var errInjected = errors.New("injected: connection reset by peer")

func (c *failingConn) Write(p []byte) (int, error) {
	if c.arm.CompareAndSwap(true, false) {
		n := 0
		if c.partial.Load() {
			n, _ = c.Conn.Write(p[:len(p)/2])
		}
		c.Conn.Close()
		return n, errInjected
	}
	return c.Conn.Write(p)
}

// TestPooledWriteFailure: when writing a request on a pooled connection
// fails, a POST is resent on a fresh connection only if none of it was
// written; otherwise it gets 502 and is not resent.
func TestPooledWriteFailure(t *testing.T) {
	var mu sync.Mutex
	var got []string
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.URL.Path+" "+string(body))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	var arm, partial atomic.Bool
	d := &countingDialer{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &failingConn{Conn: nc, arm: &arm, partial: &partial}, nil
	}
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, func(c *Config) { c.DialContext = dial })
	c := client(t)
	received := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }

	h.do(t, c, "GET", "acme", "/warm", nil)
	poll(t, "connection pooled", func() bool { return h.srv.IdleUpstreamConns() == 1 })
	arm.Store(true)
	if resp, b := h.do(t, c, "POST", "acme", "/pay", strings.NewReader("once")); resp.StatusCode != 200 || b != "ok" {
		t.Fatalf("POST after a write that sent nothing: %d %q, want it resent", resp.StatusCode, b)
	}
	if r := received(); len(r) != 2 || r[1] != "/pay once" {
		t.Fatalf("upstream received %q, want /warm and /pay once", r)
	}
	if n := d.total(); n != 2 {
		t.Fatalf("%d dials, want 2 (the pooled connection, then a fresh one)", n)
	}

	poll(t, "connection pooled", func() bool { return h.srv.IdleUpstreamConns() == 1 })
	partial.Store(true)
	arm.Store(true)
	resp, b := h.do(t, c, "POST", "acme", "/half", strings.NewReader("maybe"))
	if eb := decodeError(t, b); resp.StatusCode != 502 || eb.Error != "upstream connection failed" {
		t.Fatalf("POST after a write that sent half of it: %d %q, want 502", resp.StatusCode, b)
	}
	if n := d.total(); n != 2 {
		t.Fatalf("%d dials, want no more: a POST partly sent is not resent", n)
	}
	if r := received(); len(r) != 2 {
		t.Fatalf("upstream received %q, want nothing more", r)
	}
}

// TestHungUpstreamGets504AndIsNotRetried: an upstream that stops answering on
// a pooled connection must cost the client a 504 after the response timeout,
// and the request must not be resent (to it or to another endpoint), even an
// idempotent one: it may be acting on it.
func TestHungUpstreamGets504AndIsNotRetried(t *testing.T) {
	for _, method := range []string{"POST", "GET"} {
		t.Run(method, func(t *testing.T) {
			var requests, served atomic.Int32
			up := answersOnce(t, func(*http.Request) { requests.Add(1) }, func(_ net.Conn, br *bufio.Reader) {
				io.Copy(io.Discard, br) // hang: hold the connection, never answer
			})
			other := countingBackend(t, "other", &served)
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"hang=" + up, "other@eu-west=" + other.URL}})
			h := startProxy(t, tb, func(c *Config) { c.ResponseTimeout = 200 * time.Millisecond })
			c := client(t)
			if resp, b := h.do(t, c, method, "acme", "/first", strings.NewReader("a")); resp.StatusCode != 200 || b != "ok" {
				t.Fatalf("first request: %d %q", resp.StatusCode, b)
			}
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader("b")
			}
			resp, b := h.do(t, c, method, "acme", "/second", body) // on the pooled connection
			if resp.StatusCode != 504 || !strings.Contains(b, "upstream timed out") {
				t.Fatalf("hung upstream: %d %q, want 504", resp.StatusCode, b)
			}
			if n := requests.Load(); n != 2 {
				t.Fatalf("upstream saw %d requests, want 2 (no resend)", n)
			}
			if n := served.Load(); n != 0 {
				t.Fatalf("the timed-out %s was resent to another endpoint %d times", method, n)
			}
		})
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
		switch i % 3 {
		case 1:
			method, body = "POST", "data"
		case 2:
			method = "POST" // no body: still probed, as it could not be resent
		}
		if resp, b := h.do(t, c, method, "acme", "/", strings.NewReader(body)); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("%s %d: %d %q", method, i, resp.StatusCode, b)
		}
	}
	if requests.Load() != 30 {
		t.Fatalf("upstream saw %d requests, want exactly 30", requests.Load())
	}
}
