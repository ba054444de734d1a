package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// echoHeaders is a backend that answers with the request it received, as JSON,
// and with hop-by-hop response headers that must not reach the client.
func echoHeaders(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Upstream-Private")
		w.Header().Set("X-Upstream-Private", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Edge-Ray", "forged")
		w.Header().Set("X-Edge-Route", "forged")
		w.Header().Set("X-Edge-Endpoint", "forged")
		w.Header().Set("X-Upstream", "visible")
		json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "uri": r.RequestURI, "header": r.Header})
	}))
	t.Cleanup(s.Close)
	return s
}

type echoed struct {
	Host   string              `json:"host"`
	URI    string              `json:"uri"`
	Header map[string][]string `json:"header"`
}

// echoedRequest is the request echoHeaders received, from its 200 answer.
func echoedRequest(t *testing.T, resp *http.Response, body string) echoed {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got echoed
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return got
}

// rawRequest writes raw bytes to the proxy and returns the parsed response.
func rawRequest(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c := dialRaw(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRequestAndResponseHeaders(t *testing.T) {
	be := echoHeaders(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL + "/base"}})
	h := startProxy(t, tb, nil)
	resp, body := rawRequest(t, h.addr, "GET /items?id=7 HTTP/1.1\r\n"+
		"Host: shop.example\r\n"+
		"X-Routing-Key: acme\r\n"+
		"X-Forwarded-For: 203.0.113.9\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"Connection: keep-alive, X-Hop\r\n"+
		"X-Hop: must-not-pass\r\n"+
		"Keep-Alive: timeout=9\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Te: trailers, deflate\r\n"+
		"X-Custom: kept\r\n\r\n")
	got := echoedRequest(t, resp, body)
	hdr := http.Header(got.Header)
	checks := []struct{ what, got, want string }{
		{"Host sent upstream", got.Host, strings.TrimPrefix(be.URL, "http://")},
		{"path with endpoint prefix", got.URI, "/base/items?id=7"},
		{"X-Forwarded-For (the client's dropped: not a trusted proxy)", strings.Join(hdr.Values("X-Forwarded-For"), ","), "127.0.0.1"},
		{"X-Forwarded-Proto", strings.Join(hdr.Values("X-Forwarded-Proto"), ","), "http"},
		{"X-Forwarded-Host", hdr.Get("X-Forwarded-Host"), "shop.example"},
		{"Forwarded", strings.Join(hdr.Values("Forwarded"), ","), `for=127.0.0.1;host="shop.example";proto=http`},
		{"X-Routing-Key", hdr.Get("X-Routing-Key"), "acme"},
		{"X-Custom", hdr.Get("X-Custom"), "kept"},
		{"Te", hdr.Get("Te"), "trailers"},
		{"X-Hop (named by Connection)", hdr.Get("X-Hop"), ""},
		{"Keep-Alive", hdr.Get("Keep-Alive"), ""},
		{"Proxy-Authorization", hdr.Get("Proxy-Authorization"), ""},
		{"X-Edge-Ray sent upstream", hdr.Get("X-Edge-Ray"), resp.Header.Get("X-Edge-Ray")},
		{"response X-Upstream", resp.Header.Get("X-Upstream"), "visible"},
		{"response X-Upstream-Private (named by Connection)", resp.Header.Get("X-Upstream-Private"), ""},
		{"response Keep-Alive", resp.Header.Get("Keep-Alive"), ""},
		{"response X-Edge-Endpoint", strings.Join(resp.Header.Values("X-Edge-Endpoint"), ","), "e1@us-east"},
		{"upstream's X-Edge-Route (no X-Edge-Debug)", resp.Header.Get("X-Edge-Route"), ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
	if rays := resp.Header.Values("X-Edge-Ray"); len(rays) != 1 || !rayRE.MatchString(rays[0]) {
		t.Errorf("X-Edge-Ray %v: want exactly the edge's own", rays)
	}
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	be := backend(t, "b1")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, func(c *Config) { c.MaxHeaderBytes = 1024 })
	tests := []struct {
		name, raw string
		status    int
	}{
		{"both Content-Length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"obsolete line folding", "GET / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\nX-A: 1\r\n  continued\r\n\r\n", 400},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\nX-Routing-Key: acme\r\n\r\n", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n", 431},
		{"space in header name", "GET / HTTP/1.1\r\nHost: x\r\nX Bad: 1\r\n\r\n", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRequest(t, h.addr, tc.raw)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if !rayRE.MatchString(resp.Header.Get("X-Edge-Ray")) || !resp.Close {
				t.Fatalf("want a ray and a closed connection: %v", resp.Header)
			}
			var eb errBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" {
				t.Fatalf("body %q: %v", body, err)
			}
		})
	}
}

func TestAbsoluteFormTargetAndHTTP10Client(t *testing.T) {
	be := echoHeaders(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	resp, body := rawRequest(t, h.addr, "GET http://shop.example/a?b=1 HTTP/1.0\r\nX-Routing-Key: acme\r\n\r\n")
	var got echoed
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if resp.StatusCode != 200 || got.URI != "/a?b=1" || http.Header(got.Header).Get("X-Forwarded-Host") != "shop.example" {
		t.Fatalf("got %d %+v", resp.StatusCode, got)
	}
	if !resp.Close {
		t.Fatal("HTTP/1.0 request without keep-alive: the connection must close")
	}
}

// TestForwardingHeaders: the forwarding fields are the edge's alone unless
// the peer is a trusted proxy, whose chains are extended and whose scheme
// and host are kept (Caddy's trusted_proxies).
func TestForwardingHeaders(t *testing.T) {
	be := echoHeaders(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	const sent = "GET / HTTP/1.1\r\nHost: shop.example:8443\r\nX-Routing-Key: acme\r\n" +
		"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.1\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: forged.example\r\n" +
		"Forwarded: for=203.0.113.9;proto=https\r\n\r\n"
	tests := []struct {
		name    string
		trusted []netip.Prefix
		want    map[string]string
	}{
		{"untrusted peer", nil, map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "shop.example:8443",
			"Forwarded":         `for=127.0.0.1;host="shop.example:8443";proto=http`,
		}},
		{"other networks trusted", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, map[string]string{
			"X-Forwarded-For": "127.0.0.1",
			"Forwarded":       `for=127.0.0.1;host="shop.example:8443";proto=http`,
		}},
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, map[string]string{
			"X-Forwarded-For":   "203.0.113.9, 198.51.100.1, 127.0.0.1",
			"X-Forwarded-Proto": "https",
			"X-Forwarded-Host":  "forged.example",
			"Forwarded":         `for=203.0.113.9;proto=https, for=127.0.0.1;host="shop.example:8443";proto=http`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startProxy(t, tb, func(c *Config) { c.TrustedProxies = tc.trusted })
			resp, body := rawRequest(t, h.addr, sent)
			hdr := http.Header(echoedRequest(t, resp, body).Header)
			for name, want := range tc.want {
				if v := strings.Join(hdr.Values(name), ", "); v != want {
					t.Errorf("%s: %q, want %q", name, v, want)
				}
			}
		})
	}
}

// TestInvalidHostRefused: a Host that could break out of the quoted host=
// of Forwarded (or fool an upstream) is refused, as net/http does.
func TestInvalidHostRefused(t *testing.T) {
	be := echoHeaders(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	for _, host := range []string{`a"b`, `a\b`, "a b", "a{b}", "a<b>"} {
		resp, body := rawRequest(t, h.addr, "GET / HTTP/1.1\r\nHost: "+host+"\r\nX-Routing-Key: acme\r\n\r\n")
		if resp.StatusCode != 400 || !strings.Contains(body, "invalid Host header") {
			t.Errorf("Host %q: %d %s, want 400 invalid Host header", host, resp.StatusCode, body)
		}
	}
}

// TestDebugHeaderPolicy: X-Edge-Route answers X-Edge-Debug only where the
// edge allows it; by default nobody gets it.
func TestDebugHeaderPolicy(t *testing.T) {
	be := echoHeaders(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name    string
		policy  DebugPolicy
		trusted []netip.Prefix
		answers bool
	}{
		{"default (off)", DebugOff, loopback, false},
		{"trusted, peer untrusted", DebugTrusted, nil, false},
		{"trusted, peer trusted", DebugTrusted, loopback, true},
		{"on", DebugOn, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startProxy(t, tb, func(c *Config) { c.DebugHeader, c.TrustedProxies = tc.policy, tc.trusted })
			resp, body := rawRequest(t, h.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nX-Edge-Debug: 1\r\n\r\n")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Edge-Route") != ""; got != tc.answers {
				t.Errorf("X-Edge-Route %q: answered %v, want %v", resp.Header.Get("X-Edge-Route"), got, tc.answers)
			}
		})
	}
}
