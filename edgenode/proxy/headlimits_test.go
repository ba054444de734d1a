package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// countingEcho is echoHeaders that also counts the requests it received,
// to show that a refused request never reached the upstream.
func countingEcho(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "uri": r.RequestURI, "header": r.Header})
	}))
	t.Cleanup(s.Close)
	return s, &n
}

// headWith is a GET of target with the routing key, Host and extra lines.
func headWith(target string, lines ...string) string {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// fieldLines returns n lines "X-F<i>: v".
func fieldLines(n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf("X-F%d: v", i)
	}
	return l
}

// connectionLine is a Connection field listing n tokens.
func connectionLine(n int) string {
	t := make([]string, n)
	for i := range t {
		t[i] = fmt.Sprintf("X-T%d", i)
	}
	return "Connection: " + strings.Join(t, ", ")
}

// sizedHead is a request head of exactly size bytes (one padding field).
func sizedHead(size int) string {
	h := headWith("/", "X-Pad: ")
	return headWith("/", "X-Pad: "+strings.Repeat("p", size-len(h)))
}

func TestHeadLimitsAtAndOverTheirBound(t *testing.T) {
	be, seen := countingEcho(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	long := "/" + strings.Repeat("a", 8<<10-1)
	tests := []struct {
		name, raw string
		status    int
		reason    string // in the error body
	}{
		{"100 fields", headWith("/", fieldLines(98)...), 200, ""},
		{"101 fields", headWith("/", fieldLines(99)...), 431, "too many header fields"},
		{"16 Connection tokens", headWith("/", connectionLine(16)), 200, ""},
		{"17 Connection tokens", headWith("/", connectionLine(17)), 400, "too many Connection tokens"},
		{"17 tokens over two Connection fields", headWith("/", connectionLine(9), connectionLine(8)), 400, "too many Connection tokens"},
		{"8 KiB target", headWith(long), 200, ""},
		{"8 KiB + 1 target", headWith(long + "a"), 414, "request target too long"},
		{"64 KiB head", sizedHead(64 << 10), 200, ""},
		{"64 KiB + 1 head", sizedHead(64<<10 + 1), 431, "request head too large"},
		{"header bomb", headerBomb(), 431, "too many header fields"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := seen.Load()
			resp, body := rawRequest(t, h.addr, tc.raw)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%.200s)", resp.StatusCode, tc.status, body)
			}
			reached := seen.Load() - before
			if tc.status != 200 {
				var eb errBody
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error != tc.reason || !resp.Close {
					t.Fatalf("body %q (%v), close %v: want error %q and a closed connection", body, err, resp.Close, tc.reason)
				}
				if reached != 0 {
					t.Fatalf("a refused request reached the upstream %d times", reached)
				}
			} else if reached != 1 {
				t.Fatalf("upstream saw %d requests, want 1", reached)
			}
		})
	}
}

func TestHeadLimitsAreConfigurable(t *testing.T) {
	be, _ := countingEcho(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, func(c *Config) {
		c.MaxHeaderCount, c.MaxConnectionTokens, c.MaxRequestTarget = 5, 2, 10
	})
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{headWith("/", fieldLines(3)...), 200},
		{headWith("/", fieldLines(4)...), 431},
		{headWith("/", connectionLine(2)), 200},
		{headWith("/", connectionLine(3)), 400},
		{headWith("/123456789"), 200},
		{headWith("/1234567890"), 414},
	} {
		if resp, body := rawRequest(t, h.addr, tc.raw); resp.StatusCode != tc.status {
			t.Errorf("%.60q: status %d, want %d (%s)", tc.raw, resp.StatusCode, tc.status, body)
		}
	}
}

// The Connection tokens listed still drop their fields (the cap does not
// change what is hop-by-hop).
func TestConnectionTokensStillDropTheirFields(t *testing.T) {
	be, _ := countingEcho(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	lines := append([]string{connectionLine(16)}, "X-T0: a", "X-T15: b", "X-T16: kept")
	resp, body := rawRequest(t, h.addr, headWith("/", lines...))
	var got echoed
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v: %s", resp.StatusCode, err, body)
	}
	hdr := http.Header(got.Header)
	if hdr.Get("X-T0") != "" || hdr.Get("X-T15") != "" || hdr.Get("X-T16") != "kept" {
		t.Fatalf("upstream headers %v", hdr)
	}
}

// headerNamed returns the values of the header named exactly name
// (net/http does not canonicalise names with "_").
func headerNamed(h map[string][]string, name string) []string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func TestHeadersWithUnderscores(t *testing.T) {
	raw := headWith("/", "X_Edge_Key_Id: forged", "X-Kept: 1")
	t.Run("reject by default", func(t *testing.T) {
		be, seen := countingEcho(t)
		tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
		h := startProxy(t, tb, nil)
		resp, body := rawRequest(t, h.addr, raw)
		var eb errBody
		json.Unmarshal([]byte(body), &eb)
		if resp.StatusCode != 400 || !strings.Contains(eb.Error, "X_Edge_Key_Id") || seen.Load() != 0 {
			t.Fatalf("status %d, body %s, upstream saw %d: want 400 naming the header, nothing upstream", resp.StatusCode, body, seen.Load())
		}
	})
	for _, tc := range []struct {
		name   string
		action UnderscoreAction
		want   []string
	}{
		{"drop", UnderscoresDrop, nil},
		{"allow", UnderscoresAllow, []string{"forged"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, _ := countingEcho(t)
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
			h := startProxy(t, tb, func(c *Config) { c.HeadersWithUnderscores = tc.action })
			resp, body := rawRequest(t, h.addr, raw)
			var got echoed
			if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %v: %s", resp.StatusCode, err, body)
			}
			if v := headerNamed(got.Header, "X_Edge_Key_Id"); fmt.Sprint(v) != fmt.Sprint(tc.want) {
				t.Fatalf("upstream got X_Edge_Key_Id %q, want %q", v, tc.want)
			}
			if headerNamed(got.Header, "X-Kept") == nil {
				t.Fatal("the other headers must pass")
			}
		})
	}
	for _, s := range []string{"reject", "drop", "allow"} {
		if a, err := ParseUnderscoreAction(s); err != nil || [...]string{"reject", "drop", "allow"}[a] != s {
			t.Errorf("ParseUnderscoreAction(%q) = %v, %v", s, a, err)
		}
	}
	if _, err := ParseUnderscoreAction("ignore"); err == nil {
		t.Error("ParseUnderscoreAction accepted ignore")
	}
}

func TestDotSegmentsAreRemovedBeforeThePathPrefix(t *testing.T) {
	be, seen := countingEcho(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL + "/api"}})
	h := startProxy(t, tb, nil)
	tests := []struct {
		target string
		want   string // the URI the upstream sees; "" for a 400
	}{
		{"/v1/../admin", "/api/admin"},
		{"/v1/%2e%2e/admin", "/api/admin"},
		{"/v1/.%2E/admin?next=/../x", "/api/admin?next=/../x"},
		{"/v1/./a/./b/", "/api/v1/a/b/"},
		{"/v1/a/..", "/api/v1/"},
		{"/v1/a/.", "/api/v1/a/"},
		{"/v1//../b", "/api/v1/b"},
		{"/v1/file.tar.gz", "/api/v1/file.tar.gz"},
		{"/v1/..a/.b", "/api/v1/..a/.b"},
		{"/v1/a%2Fb", "/api/v1/a%2Fb"},
		{"http://shop.example/v1/../admin", "/api/admin"},
		{"/..", ""},
		{"/../x", ""},
		{"/v1/../../x", ""},
		{"/%2e%2e/x", ""},
		{"/v1/..%2fadmin", ""},
		{"/v1/a%2F..%2F..%2Fx", ""},
		{"/v1/..%5Cadmin", ""},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			before := seen.Load()
			resp, body := rawRequest(t, h.addr, headWith(tc.target))
			if tc.want == "" {
				if resp.StatusCode != 400 || seen.Load() != before {
					t.Fatalf("status %d (%s), upstream saw %d: want 400 and nothing upstream", resp.StatusCode, body, seen.Load()-before)
				}
				return
			}
			var got echoed
			if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %v: %s", resp.StatusCode, err, body)
			}
			if got.URI != tc.want {
				t.Fatalf("upstream saw %q, want %q", got.URI, tc.want)
			}
		})
	}
}

func TestOnlyAllowedUpgradesAreForwarded(t *testing.T) {
	be, _ := countingEcho(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	tests := []struct {
		name, upgrade string
		allowed       []string
		want          string // Upgrade seen upstream
	}{
		{"websocket", "websocket", nil, "websocket"},
		{"WebSocket with a version", "WebSocket/13", nil, "WebSocket/13"},
		{"h2c stripped", "h2c", nil, ""},
		{"h2c then websocket", "h2c, websocket", nil, "websocket"},
		{"allowed by config", "h2c", []string{"H2C"}, "h2c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startProxy(t, tb, func(c *Config) { c.AllowedUpgrades = tc.allowed })
			resp, body := rawRequest(t, h.addr, headWith("/", "Connection: Upgrade, HTTP2-Settings", "Upgrade: "+tc.upgrade, "HTTP2-Settings: AAA"))
			var got echoed
			if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %v: %s", resp.StatusCode, err, body)
			}
			hdr := http.Header(got.Header)
			if hdr.Get("Upgrade") != tc.want || hdr.Get("HTTP2-Settings") != "" {
				t.Fatalf("upstream saw Upgrade %q, HTTP2-Settings %q: want %q and none", hdr.Get("Upgrade"), hdr.Get("HTTP2-Settings"), tc.want)
			}
			if c := hdr.Get("Connection"); (c != "") != (tc.want != "") {
				t.Fatalf("upstream saw Connection %q", c)
			}
		})
	}
}

// answering is an upstream that answers every request head (no bodies)
// with resp, for responses net/http would not send; it returns the URL.
func answering(t *testing.T, resp string) string {
	return serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				io.WriteString(c, resp)
			}
		}
	})
}

func TestBadReasonPhraseIsReplaced(t *testing.T) {
	for _, tc := range []struct{ status, want string }{
		{"200 O\x01K", "200 OK"},
		{"404 Not\rFound", "404 Not Found"},
		{"299 Bad\x7f", "299 "},
		{"201 Fine \xe9t\té", "201 Fine \xe9t\té"},
	} {
		t.Run(tc.status, func(t *testing.T) {
			up := answering(t, "HTTP/1.1 "+tc.status+"\r\nContent-Length: 2\r\n\r\nok")
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
			h := startProxy(t, tb, nil)
			c := dialRaw(t, h.addr)
			io.WriteString(c, headWith("/"))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "HTTP/1.1 "+tc.want+"\r\n" {
				t.Fatalf("status line %q (%v), want %q", line, err, "HTTP/1.1 "+tc.want+"\r\n")
			}
		})
	}
}

func TestUpstreamConnectionTokensAreBounded(t *testing.T) {
	for _, tc := range []struct {
		tokens, status int
	}{{16, 200}, {17, 502}} {
		t.Run(fmt.Sprint(tc.tokens), func(t *testing.T) {
			up := answering(t, "HTTP/1.1 200 OK\r\n"+connectionLine(tc.tokens)+"\r\nX-T0: private\r\nContent-Length: 2\r\n\r\nok")
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
			h := startProxy(t, tb, nil)
			resp, body := rawRequest(t, h.addr, headWith("/"))
			if resp.StatusCode != tc.status || resp.Header.Get("X-T0") != "" {
				t.Fatalf("status %d (%s), X-T0 %q: want %d and no X-T0", resp.StatusCode, body, resp.Header.Get("X-T0"), tc.status)
			}
		})
	}
}

// BenchmarkParseHeaderBomb is what parsing the bomb costs the edge alone,
// without the sockets of BenchmarkHeaderBomb.
func BenchmarkParseHeaderBomb(b *testing.B) {
	raw := headerBomb()
	lim := HeadLimits{}.withDefaults()
	var r request
	for b.Loop() {
		r.reset()
		if err := r.readHead(bufio.NewReader(strings.NewReader(raw)), 64<<10); err != nil {
			b.Fatal(err)
		}
		if err := r.parse(&lim); err != errTooManyFields {
			b.Fatal(err)
		}
	}
}
