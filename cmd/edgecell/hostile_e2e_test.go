package main

// The hostile-client suite (make hostile): a real `edgecell edge` process,
// fed by a one-member coordinator, in front of upstreams written here, and
// clients that misbehave over real sockets: request smuggling, header
// bombs, slowloris, signed bodies announced and never sent, an upstream
// that never answers, websocket tunnels of a revoked key or left idle. Each
// test asserts what a user of the edge would notice.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgecell/edgecell/hmacsig"
	"github.com/edgecell/edgecell/internal/testutil"
)

// hostileKey is the routing key of the one cell of startHostile.
const hostileKey = "tenant-1"

// hostileEdge is an edge process in front of one cell.
type hostileEdge struct {
	p      *process
	bin    string
	grpc   string // the coordinator's gRPC address
	listen string // the proxy's address
	admin  string // /healthz, /readyz, /metrics
}

// startHostile builds the binary, starts a one-member coordinator with one
// cell (cell-1, placed at hostileKey, HMAC-signed requests only when hmac)
// whose endpoint is backendURL, and an edge in front of it with
// --admin-listen and flags. It returns once /readyz reports the config's
// revision, and fails at once if the edge exits (a flag it does not know).
func startHostile(t *testing.T, backendURL string, hmac bool, flags ...string) *hostileEdge {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a coordinator and an edge as processes; skipped with -short")
	}
	began := time.Now()
	bin := buildBinary(t)
	dir := t.TempDir()
	grpcAddr, raftAddr := freeAddr(t), freeAddr(t)
	startProcess(t, "n1", bin, "coordinator", "--name", "n1", "--region", "us-east",
		"--data-dir", filepath.Join(dir, "n1"), "--grpc-addr", grpcAddr, "--raft-addr", raftAddr,
		"--initial-cluster", "n1="+raftAddr)
	auth := ""
	if hmac {
		auth = "\n    auth: {mode: AUTH_MODE_HMAC}"
	}
	rev := applyConfig(t, bin, grpcAddr, fmt.Sprintf(`
regions: [{name: us-east}]
cells:
  - id: cell-1%s
    endpoints:
      - {id: us-east-1, url: %q, region: us-east}
placements:
  - {key: %s, cell: cell-1}
`, auth, backendURL, hostileKey))
	e := &hostileEdge{bin: bin, grpc: grpcAddr, listen: freeAddr(t), admin: freeAddr(t)}
	args := append([]string{"edge", "--name", "edge-us-east", "--region", "us-east",
		"--data-dir", filepath.Join(dir, "edge"), "--listen", e.listen, "--admin-listen", e.admin,
		"--coordinators", grpcAddr}, flags...)
	e.p = startProcess(t, "edge", bin, args...)
	admin := &http.Client{Timeout: 2 * time.Second}
	eventually(t, fmt.Sprintf("the edge's /readyz at revision %d", rev), func() error {
		select {
		case <-e.p.done:
			t.Fatalf("the edge (%s) exited: %s\n%s", strings.Join(flags, " "), e.p.cmd.ProcessState, e.p.out)
		default:
		}
		resp, err := admin.Get("http://" + e.admin + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var at uint64
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		if _, err := fmt.Sscanf(string(b), "ready at revision %d", &at); err != nil || at < rev {
			return fmt.Errorf("/readyz: %q", b)
		}
		return nil
	})
	t.Logf("built, and coordinator and edge ready at revision %d, in %v", rev, time.Since(began).Round(time.Millisecond))
	return e
}

func (e *hostileEdge) pid() int { return e.p.cmd.Process.Pid }

// createKey creates an API key for cell-1 with the CLI and returns a
// signer for it (its id in KeyID).
func (e *hostileEdge) createKey(t *testing.T, name string) *hmacsig.Signer {
	t.Helper()
	out, err := cliRun(e.bin, e.grpc, "", "key", "create", "--name", name, "--cells", "cell-1")
	if err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`key id: (k_[0-9a-f]+)`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`secret: (sk_\S+)`).FindStringSubmatch(out)
	if id == nil || secret == nil {
		t.Fatalf("key create printed no key id and secret:\n%s", out)
	}
	return &hmacsig.Signer{KeyID: id[1], Secret: []byte(secret[1])}
}

// get sends a GET of path with the routing key through the edge on a new
// connection, signed by signer unless it is nil, and returns the status
// and body.
func (e *hostileEdge) get(path string, signer *hmacsig.Signer) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+e.listen+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Routing-Key", hostileKey)
	if signer != nil {
		if err := signer.Sign(req); err != nil {
			return 0, "", err
		}
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitServed polls until a GET of path (signed by signer unless nil) gets
// 200: a new key has reached the edge.
func (e *hostileEdge) waitServed(t *testing.T, path string, signer *hmacsig.Signer) {
	t.Helper()
	eventually(t, "GET "+path+" served with 200", func() error {
		status, body, err := e.get(path, signer)
		if err == nil && status != 200 {
			err = fmt.Errorf("status %d: %s", status, body)
		}
		return err
	})
}

// procStatusKB reads a "VmRSS:   1234 kB" line of /proc/<pid>/status.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the edge's status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", field, line, err)
			}
			return kb
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// openFDs counts the file descriptors of process pid: its accepted client
// connections among them.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("list the edge's file descriptors: %v", err)
	}
	return len(ents)
}

// metric returns the value of the first sample of the edge's /metrics
// whose line starts with name followed by a space or a '{'.
func (e *hostileEdge) metric(t *testing.T, name string) (float64, bool) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + e.admin + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

const mib = 1 << 20

// isReset reports whether err is the peer closing the connection (a reset
// or a write to a closed socket), as opposed to a timeout or a bug here.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ---- 1. Smuggling -------------------------------------------------------

// recordingUpstream is a raw-TCP upstream that parses every request head it
// receives with net/http's http.ReadRequest, in a loop per connection,
// records it with its body, and answers 200 with the request target as the
// body (with Content-Length), so a client can tell whose answer it got.
type recordingUpstream struct {
	ln net.Listener

	mu    sync.Mutex
	seen  []upstreamRequest
	bad   []string // what could not be parsed as a request head
	conns map[net.Conn]struct{}
}

type upstreamRequest struct {
	target  string
	body    []byte
	bodyErr error // the body was cut short (the edge gave up on it)
}

func startRecordingUpstream(t *testing.T) *recordingUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &recordingUpstream{ln: ln, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns[c] = struct{}{}
			u.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); u.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		u.mu.Lock()
		for c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		wg.Wait()
	})
	return u
}

func (u *recordingUpstream) url() string { return "http://" + u.ln.Addr().String() }

func (u *recordingUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			// io.EOF: the edge closed an idle connection. A head cut
			// short or a reset is the edge giving up; anything else is
			// bytes that are no request head at all.
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
				u.mu.Lock()
				u.bad = append(u.bad, err.Error())
				u.mu.Unlock()
			}
			return
		}
		body, berr := io.ReadAll(req.Body)
		u.mu.Lock()
		u.seen = append(u.seen, upstreamRequest{target: req.RequestURI, body: body, bodyErr: berr})
		u.mu.Unlock()
		if berr != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(req.RequestURI), req.RequestURI); err != nil || req.Close {
			return
		}
	}
}

// requests returns what the upstream saw with target, and how many heads
// it saw in all.
func (u *recordingUpstream) requests(target string) (with []upstreamRequest, total int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range u.seen {
		if r.target == target {
			with = append(with, r)
		}
	}
	return with, len(u.seen)
}

func (u *recordingUpstream) badHeads() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.bad)
}

// smuggleWant is what a smuggling case must get.
type smuggleWant uint8

const (
	wantRefused smuggleWant = iota // a 4xx or 5xx from the edge
	wantProxied                    // the upstream's one answer
	wantEither                     // either, but nothing more
)

func (w smuggleWant) String() string {
	return [...]string{"refused", "proxied", "refused or proxied"}[w]
}

// rawExchange sends raw on a new connection, half-closes it (the client
// sends nothing more) and reads one response and whatever follows it until
// the edge closes the connection.
func rawExchange(addr, raw string) (resp *http.Response, body, rest []byte, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil && !isReset(err) {
		return nil, nil, nil, err
	}
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("no answer: %w", err)
	}
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return resp, body, nil, fmt.Errorf("answer's body: %w", err)
	}
	rest, err = io.ReadAll(br)
	if err != nil && !isReset(err) {
		return resp, body, rest, fmt.Errorf("after the answer: %w", err)
	}
	return resp, body, rest, nil
}

// TestHostileSmuggling sends request-smuggling attempts (ambiguous or
// malformed framing hiding a second request) over raw TCP, one per
// connection with nothing after it, to an edge in front of a recording
// upstream. The upstream must never see more requests than the client
// sent, never a request for /smuggled, never bytes that are no request;
// the client must get one answer: the edge's refusal (4xx/5xx) or the
// upstream's answer to its request, nothing more.
func TestHostileSmuggling(t *testing.T) {
	up := startRecordingUpstream(t)
	e := startHostile(t, up.url(), false)

	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Routing-Key: " + hostileKey + "\r\n\r\n"
	// hidden ends a chunked body and then is the smuggled request: data
	// under Content-Length framing, a second request under chunked.
	const hidden = "0\r\n\r\n" + smuggled
	const abc = "3\r\nabc\r\n0\r\n\r\n"
	cl := func(body string) string { return fmt.Sprintf("Content-Length: %d", len(body)) }
	chunk := func(data string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(data), data) }
	// teCL is chunked framing of the smuggled request: under Content-Length
	// framing of its size line alone the request follows.
	teCL := chunk(smuggled) + "0\r\n\r\n"
	sizeLine := fmt.Sprintf("%x\r\n", len(smuggled))
	const te = "Transfer-Encoding: chunked"

	cases := []struct {
		name   string
		proto  string   // default HTTP/1.1
		fields []string // after Host and X-Routing-Key
		body   string
		want   smuggleWant
		// upstreamBody, when set, is what the upstream must receive if
		// the request is proxied.
		upstreamBody string
	}{
		{name: "CL.TE: Content-Length, then chunked", fields: []string{cl(hidden), te}, body: hidden},
		{name: "TE.CL: chunked, then Content-Length", fields: []string{te, cl(sizeLine)}, body: teCL},
		{name: "CL.TE with Content-Length: 0", fields: []string{"Content-Length: 0", te}, body: hidden},
		{name: "two Content-Length fields with different values", fields: []string{"Content-Length: 5", cl(hidden)}, body: hidden},
		{name: "one Content-Length field with two values", fields: []string{"Content-Length: 5, " + strconv.Itoa(len(hidden))}, body: hidden},
		{name: "two Content-Length fields with the same value", fields: []string{"Content-Length: 5", "Content-Length: 5"}, body: "hello", want: wantEither, upstreamBody: "hello"},
		{name: "Content-Length with a sign", fields: []string{"Content-Length: +5"}, body: "hello"},
		{name: "Content-Length in hex", fields: []string{"Content-Length: 0x5"}, body: "hello"},
		{name: "chunked in an obs-fold, with Content-Length", fields: []string{cl(hidden), "Transfer-Encoding:", " chunked"}, body: hidden},
		{name: "chunked in an obs-fold", fields: []string{"Transfer-Encoding:", " chunked"}, body: abc},
		{name: "Transfer-Encoding on a continuation line, with Content-Length", fields: []string{cl(hidden), "X-Pad: a", " Transfer-Encoding: chunked"}, body: hidden},
		{name: "' chunked' with Content-Length", fields: []string{cl(hidden), "Transfer-Encoding:  chunked"}, body: hidden},
		{name: "' chunked'", fields: []string{"Transfer-Encoding:  chunked"}, body: abc, want: wantEither, upstreamBody: "abc"},
		{name: "tab before chunked", fields: []string{"Transfer-Encoding:\tchunked"}, body: abc, want: wantEither, upstreamBody: "abc"},
		{name: "space before the colon of Transfer-Encoding", fields: []string{cl(hidden), "Transfer-Encoding : chunked"}, body: hidden},
		{name: "'chunked, identity'", fields: []string{"Transfer-Encoding: chunked, identity"}, body: abc},
		{name: "'chunked, identity' with Content-Length", fields: []string{cl(hidden), "Transfer-Encoding: chunked, identity"}, body: hidden},
		{name: "'identity, chunked'", fields: []string{"Transfer-Encoding: identity, chunked"}, body: abc},
		{name: "xchunked", fields: []string{"Transfer-Encoding: xchunked"}, body: abc},
		{name: "xchunked with Content-Length", fields: []string{cl(hidden), "Transfer-Encoding: xchunked"}, body: hidden},
		{name: "chunked twice", fields: []string{te, te}, body: abc},
		{name: "chunked on HTTP/1.0", proto: "HTTP/1.0", fields: []string{te}, body: abc},
		{name: "bare LF after a chunk size", fields: []string{te}, body: "3\nabc\r\n0\r\n\r\n"},
		{name: "bare LF after chunk data", fields: []string{te}, body: "3\r\nabc\n0\r\n\r\n"},
		{name: "bare LF ends the last chunk, a request behind it", fields: []string{te}, body: "0\n\n" + smuggled},
		{name: "bare LF ends the trailer section, a request behind it", fields: []string{te}, body: "0\r\n\n" + smuggled},
		{name: "bare CR in a chunk extension", fields: []string{te}, body: "3;a\rb\r\nabc\r\n0\r\n\r\n"},
		{name: "bare CR in a quoted chunk extension", fields: []string{te}, body: "3;a=\"b\rc\"\r\nabc\r\n0\r\n\r\n"},
		{name: "bare LF in a chunk extension, a request behind it", fields: []string{te}, body: "3;a\n" + hidden},
		{name: "chunk size with 0x", fields: []string{te}, body: "0x3\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size 0x hiding a request", fields: []string{te}, body: "0x" + sizeLine + smuggled + "\r\n0\r\n\r\n"},
		{name: "chunk size with +", fields: []string{te}, body: "+3\r\nabc\r\n0\r\n\r\n"},
		{name: "negative chunk size", fields: []string{te}, body: "-3\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size of 17 hex digits (2^64 + 3)", fields: []string{te}, body: "10000000000000003\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size of 17 digits, leading zeros", fields: []string{te}, body: "00000000000000003\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size 2^64 - 1", fields: []string{te}, body: "ffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size 2^60 + 3", fields: []string{te}, body: "1000000000000003\r\nabc\r\n0\r\n\r\n"},
		{name: "space before a chunk size", fields: []string{te}, body: " 3\r\nabc\r\n0\r\n\r\n"},
		{name: "space between a chunk size and ';'", fields: []string{te}, body: "3 ;a\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk data longer than its size", fields: []string{te}, body: "3\r\nabcdef\r\n0\r\n\r\n"},
		{name: "framing fields in the trailer", fields: []string{te}, body: "3\r\nabc\r\n0\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n", want: wantEither, upstreamBody: "abc"},
		{name: "a request as data of a Content-Length body", fields: []string{cl(hidden)}, body: hidden, want: wantProxied, upstreamBody: hidden},
		{name: "a request as data of a chunk", fields: []string{te}, body: chunk(hidden) + "0\r\n\r\n", want: wantProxied, upstreamBody: hidden},
	}
	sent, began := 0, time.Now()
	for i, tc := range cases {
		target := fmt.Sprintf("/hostile/%d", i)
		proto := tc.proto
		if proto == "" {
			proto = "HTTP/1.1"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "POST %s %s\r\nHost: x\r\nX-Routing-Key: %s\r\n", target, proto, hostileKey)
		for _, f := range tc.fields {
			b.WriteString(f + "\r\n")
		}
		b.WriteString("\r\n" + tc.body)
		sent++
		resp, body, rest, err := rawExchange(e.listen, b.String())
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		seen, _ := up.requests(target)
		got := "refused"
		switch {
		case resp.StatusCode == 200 && string(body) == target:
			got = "proxied"
		case resp.StatusCode < 400:
			t.Errorf("%s: answered %s %q: neither a refusal nor the upstream's answer", tc.name, resp.Status, body)
			continue
		}
		t.Logf("%-58s %s (%d %s); upstream saw it %d times", tc.name, got, resp.StatusCode, bytes.TrimSpace(body), len(seen))
		switch {
		case tc.want == wantRefused && got != "refused":
			t.Errorf("%s: proxied; want a refusal (4xx/5xx)", tc.name)
		case tc.want == wantProxied && got != "proxied":
			t.Errorf("%s: %s %q; want it proxied (the body is data)", tc.name, resp.Status, body)
		}
		if len(rest) > 0 {
			t.Errorf("%s: after the answer the client got %q more: a second answer to one request", tc.name, rest)
		}
		if len(seen) > 1 {
			t.Errorf("%s: the upstream saw the one request %d times", tc.name, len(seen))
		}
		if got == "proxied" && len(seen) == 1 && tc.upstreamBody != "" && (seen[0].bodyErr != nil || string(seen[0].body) != tc.upstreamBody) {
			t.Errorf("%s: the upstream got the body %q (%v), want %q", tc.name, seen[0].body, seen[0].bodyErr, tc.upstreamBody)
		}
	}

	// A request on each pooled upstream connection flushes out anything
	// the edge might have left on one behind a request.
	for i := range 3 {
		sent++
		if status, body, err := e.get(fmt.Sprintf("/hostile/after-%d", i), nil); err != nil || status != 200 {
			t.Errorf("a plain request after the corpus: %d %q %v", status, body, err)
		}
	}
	smug, total := up.requests("/smuggled")
	if len(smug) > 0 {
		t.Errorf("the upstream saw %d requests for /smuggled", len(smug))
	}
	if total > sent {
		t.Errorf("the upstream saw %d requests; the client sent %d", total, sent)
	}
	if bad := up.badHeads(); len(bad) > 0 {
		t.Errorf("the upstream got bytes that are no request head: %q", bad)
	}
	t.Logf("the client sent %d requests in %v, the upstream saw %d", sent, time.Since(began).Round(time.Millisecond), total)
}

// ---- 2. Header bombs ------------------------------------------------------

// bombOnce sends head on a new connection in one write and returns the
// status of the answer and how long after the write returned its first byte
// came (0 if it came before).
func bombOnce(addr, head string) (int, time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fr := &firstByteReader{r: c}
	br := bufio.NewReader(fr)
	if _, err := io.WriteString(c, head); err != nil && !isReset(err) {
		return 0, 0, err
	}
	sent := time.Now()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("no answer: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, max(0, fr.at.Sub(sent)), nil
}

// firstByteReader notes when its first byte arrived.
type firstByteReader struct {
	r  io.Reader
	at time.Time
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.at.IsZero() {
		f.at = time.Now()
	}
	return n, err
}

// TestHostileHeaderBomb sends heads built to make parsing them expensive:
// 10,000 small header fields (60 KB, under the 64 KiB head limit, so the
// field count is what refuses it: 431) and a Connection field of 60 KiB of
// tokens (every field is compared with every token: 400, "too many
// Connection tokens"). The answer must come within 10 ms of the last byte
// (the median of a few tries), and the edge must serve a plain request
// after them.
func TestHostileHeaderBomb(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	e := startHostile(t, backend.URL, false)

	start := "GET /bomb HTTP/1.1\r\nHost: x\r\nX-Routing-Key: " + hostileKey + "\r\n"
	var fields strings.Builder
	fields.WriteString(start)
	for i := range 10000 {
		fields.WriteString(string([]byte{'a' + byte(i/26%26), 'a' + byte(i%26)}) + ":1\r\n")
	}
	fields.WriteString("\r\n")
	var tokens strings.Builder
	tokens.WriteString("Connection: t0")
	for i := 1; tokens.Len() < 60<<10; i++ {
		fmt.Fprintf(&tokens, ", t%d", i)
	}
	connection := start + tokens.String() + "\r\n\r\n"

	const tries = 7
	for _, tc := range []struct {
		name   string
		head   string
		status int
	}{
		{"10,000 header fields", fields.String(), 431},
		{"60 KiB of Connection tokens", connection, 400},
	} {
		var lat []time.Duration
		for range tries {
			status, d, err := bombOnce(e.listen, tc.head)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if status != tc.status {
				t.Fatalf("%s: status %d, want %d", tc.name, status, tc.status)
			}
			lat = append(lat, d)
		}
		slices.Sort(lat)
		median := lat[len(lat)/2]
		t.Logf("%s (%d bytes): %d in %v (median %v, max %v)", tc.name, len(tc.head), tc.status, lat, median, lat[len(lat)-1])
		if median >= 10*time.Millisecond {
			t.Errorf("%s: answered a median %v after the last byte; want under 10ms", tc.name, median)
		}
	}
	if status, body, err := e.get("/after-bombs", nil); err != nil || status != 200 || body != "ok" {
		t.Fatalf("a plain request after the bombs: %d %q %v", status, body, err)
	}
}

// ---- 3. Slowloris -------------------------------------------------------

// TestHostileSlowloris opens 10,000 connections to an edge run with
// --max-conns 12000 and the default head timeout (10 s: long enough that
// all of them are open at once even when dialling is slow, under -race on
// a loaded machine), each sending a partial head and
// then one more header byte every second, never finishing it. While they
// are open a plain client on a new connection must be served within 1 s,
// five times; the edge's memory must stay bounded; and the edge must close
// every slowloris connection once its head is overdue.
func TestHostileSlowloris(t *testing.T) {
	const (
		n           = 10000
		headTimeout = 10 * time.Second // the default
		// Each process holds one end of the n connections: this one n
		// client sockets, the edge n accepted ones (and --max-conns 12000
		// of them at most) plus its upstream and coordinator connections.
		needFDs = 12000 + 1000
	)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		// Also what the edge, a child, inherits (os/exec gives children
		// the original soft limit back unless it was set like this).
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	if lim.Max < needFDs {
		t.Skipf("RLIMIT_NOFILE hard limit %d: %d connections need %d file descriptors per process (ulimit -Hn)", lim.Max, n, needFDs)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	e := startHostile(t, backend.URL, false, "--max-conns", "12000")
	pid := e.pid()
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max open files") {
				t.Logf("edge: %s; this process: %d/%d", strings.Join(strings.Fields(l), " "), lim.Cur, lim.Max)
			}
		}
	}
	rssBefore := procStatusKB(t, pid, "VmRSS")

	type loris struct {
		c        net.Conn
		openedAt time.Time
		closedAt atomic.Int64 // unix nanoseconds when the edge closed it
		answered atomic.Bool  // the edge wrote something first
		got408   atomic.Bool  // and it was a 408
	}
	conns := make([]*loris, n)
	var closed atomic.Int64
	var readers, trickler sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		trickler.Wait()
		for _, l := range conns {
			if l != nil {
				l.c.Close()
			}
		}
		readers.Wait()
	})

	// Dial with a few workers; each connection sends its partial head and
	// gets a reader that notes when the edge closes it.
	const partial = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
	dialStart := time.Now()
	var next atomic.Int64
	var dialErr atomic.Value
	var dialers sync.WaitGroup
	for range 32 {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || dialErr.Load() != nil {
					return
				}
				c, err := net.DialTimeout("tcp", e.listen, 10*time.Second)
				if err == nil {
					_, err = io.WriteString(c, partial)
				}
				if err != nil {
					dialErr.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					if c != nil {
						c.Close()
					}
					return
				}
				l := &loris{c: c, openedAt: time.Now()}
				conns[i] = l
				readers.Add(1)
				go func() {
					defer readers.Done()
					var buf [512]byte
					for {
						k, err := c.Read(buf[:])
						if k > 0 && !l.answered.Swap(true) {
							l.got408.Store(bytes.HasPrefix(buf[:k], []byte("HTTP/1.1 408 ")))
						}
						if err != nil {
							l.closedAt.Store(time.Now().UnixNano())
							closed.Add(1)
							return
						}
					}
				}()
			}
		}()
	}
	dialers.Wait()
	if err := dialErr.Load(); err != nil {
		t.Fatalf("dialling %d connections: %v", n, err)
	}
	dialed := time.Now()
	rssOpen := procStatusKB(t, pid, "VmRSS")
	fdsOpen := openFDs(t, pid)
	t.Logf("%d connections dialled in %v; the edge has %d file descriptors, VmRSS %d MiB (was %d MiB)",
		n, dialed.Sub(dialStart).Round(time.Millisecond), fdsOpen, rssOpen>>10, rssBefore>>10)

	gauge, _ := e.metric(t, "edgecell_edge_client_connections")
	ready, err := (&http.Client{Timeout: time.Second}).Get("http://" + e.admin + "/readyz")
	if err != nil {
		t.Fatalf("/readyz with %d slowloris connections open: %v", n, err)
	}
	readyBody, _ := io.ReadAll(ready.Body)
	ready.Body.Close()
	t.Logf("edgecell_edge_client_connections %v; /readyz %d %q", gauge, ready.StatusCode, bytes.TrimSpace(readyBody))
	if ready.StatusCode != 200 {
		t.Errorf("/readyz answered %d %q with %d connections, under --max-conns 12000", ready.StatusCode, readyBody, n)
	}

	// One header byte a second on every connection, round robin.
	trickler.Add(1)
	go func() {
		defer trickler.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, l := range conns {
				if l.closedAt.Load() == 0 {
					l.c.Write([]byte{'a'}) // fails once the edge closed it
				}
			}
		}
	}()

	// A plain client, on a new connection each time, while they are open.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 5 {
		open := n - int(closed.Load())
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.listen+"/plain", nil)
		req.Header.Set("X-Routing-Key", hostileKey)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("plain request %d with %d slowloris connections open: %v", i, open, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		t.Logf("plain request %d: %d in %v with %d slowloris connections open", i, resp.StatusCode, took.Round(time.Microsecond), open)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("plain request %d: %d %q", i, resp.StatusCode, body)
		}
		if open < n/2 {
			t.Fatalf("plain request %d: only %d of %d slowloris connections were still open (dialling took %v against a %v head timeout)",
				i, open, n, dialed.Sub(dialStart), headTimeout)
		}
	}

	// The edge must close every one once its head is overdue: the last
	// was accepted by the time it was dialled.
	closeBy := dialed.Add(headTimeout + 5*time.Second)
	testutil.Eventually(t, time.Until(closeBy), func() error {
		if c := closed.Load(); c < n {
			return fmt.Errorf("the edge closed %d of %d slowloris connections", c, n)
		}
		return nil
	})
	var early, answered, got408 int
	var longest time.Duration
	for _, l := range conns {
		life := time.Unix(0, l.closedAt.Load()).Sub(l.openedAt)
		longest = max(longest, life)
		if life < headTimeout/2 {
			early++
		}
		if l.answered.Load() {
			answered++
		}
		if l.got408.Load() {
			got408++
		}
	}
	peak := procStatusKB(t, pid, "VmHWM")
	// The bound: the edge's baseline plus, per connection, a goroutine
	// (8 KiB stack, 16 KiB if it grew once), its 4 KiB read and write
	// buffers and head buffer: about 32 KiB, so 10,000 connections ~320 MiB.
	const boundMiB = 400
	t.Logf("all %d closed %v after the last dial (longest lived %v; %d answered first, %d of them with 408); VmRSS %d MiB with them open, %.1f KiB per connection; peak VmHWM %d MiB (bound %d MiB)",
		n, time.Since(dialed).Round(time.Millisecond), longest.Round(time.Millisecond), answered, got408,
		rssOpen>>10, float64(rssOpen-rssBefore)/float64(n), peak>>10, boundMiB)
	if early > 0 {
		t.Errorf("%d slowloris connections were closed less than %v after they opened, before their head was due", early, headTimeout/2)
	}
	if peak>>10 >= boundMiB {
		t.Errorf("the edge's peak RSS was %d MiB with %d slowloris connections; want under %d MiB", peak>>10, n, boundMiB)
	}
	if status, body, err := e.get("/after-slowloris", nil); err != nil || status != 200 {
		t.Fatalf("a plain request after the slowloris connections: %d %q %v", status, body, err)
	}
}

// ---- 4. Signed bodies announced and never sent ---------------------------

// TestHostileUnsentBodies opens 1,000 connections to an HMAC cell, each
// sending the head of a signed request (a real key id, a fresh timestamp
// and nonce) announcing Content-Length: 1048576, and then nothing. Half ask
// for 100 Continue, which the edge sends once the head's checks passed,
// just before it starts holding the body: a point where the edge is known
// to be waiting for it. A held body grows only as its bytes arrive, so the
// edge's memory (RSS, and its Go heap, which counts memory reserved but not
// yet touched) must grow by far less than the 1 GiB the announced bodies
// would take reserved up front.
func TestHostileUnsentBodies(t *testing.T) {
	const n = 1000
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	e := startHostile(t, backend.URL, true)
	signer := e.createKey(t, "hostile")
	e.waitServed(t, "/warm", signer)
	pid := e.pid()

	heap := func() float64 {
		v, ok := e.metric(t, "go_memstats_heap_inuse_bytes")
		if !ok {
			t.Fatal("no go_memstats_heap_inuse_bytes in the edge's /metrics")
		}
		return v
	}
	rssBefore, heapBefore, fdsBefore := procStatusKB(t, pid, "VmRSS"), heap(), openFDs(t, pid)

	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var continued sync.WaitGroup
	var notContinued atomic.Int64
	for i := range n {
		c, err := net.DialTimeout("tcp", e.listen, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		expect := i >= n/2
		head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nX-Routing-Key: %s\r\nX-Key-Id: %s\r\nX-Timestamp: %d\r\nX-Nonce: %s\r\nX-Signature: %s\r\nContent-Length: %d\r\n",
			hostileKey, signer.KeyID, time.Now().Unix(), hmacsig.NewNonce(), strings.Repeat("0", hmacsig.SignatureLen), mib)
		if expect {
			head += "Expect: 100-continue\r\n"
		}
		if _, err := io.WriteString(c, head+"\r\n"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if expect {
			continued.Add(1)
			go func() {
				defer continued.Done()
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				want := "HTTP/1.1 100 Continue\r\n\r\n"
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
					notContinued.Add(1)
				}
			}()
		}
	}
	continued.Wait()
	if k := notContinued.Load(); k > 0 {
		t.Fatalf("%d of %d connections asking for 100 Continue did not get it", k, n/2)
	}
	eventually(t, fmt.Sprintf("the edge accepted all %d connections", n), func() error {
		if v, ok := e.metric(t, "edgecell_edge_client_connections"); ok && v < n {
			return fmt.Errorf("edgecell_edge_client_connections %v", v)
		}
		if fds := openFDs(t, pid); fds < fdsBefore+n {
			return fmt.Errorf("the edge has %d file descriptors, %d before", fds, fdsBefore)
		}
		return nil
	})
	e.waitServed(t, "/after", signer)
	rssAfter, heapAfter := procStatusKB(t, pid, "VmRSS"), heap()
	grewRSS, grewHeap := float64(rssAfter-rssBefore)/1024, (heapAfter-heapBefore)/mib
	held, hasHeld := e.metric(t, "edgecell_edge_held_body_bytes")
	t.Logf("%d connections holding a head of Content-Length: %d: VmRSS %d -> %d MiB (+%.1f MiB, %.1f KiB per connection), Go heap in use %.1f -> %.1f MiB (+%.1f MiB); edgecell_edge_held_body_bytes %v (exported: %v)",
		n, mib, rssBefore>>10, rssAfter>>10, grewRSS, grewRSS*1024/n, heapBefore/mib, heapAfter/mib, grewHeap, held, hasHeld)
	if hasHeld && held >= mib {
		t.Errorf("the edge counts %.1f MiB of held bodies for heads whose bodies never came; want nothing reserved up front", held/mib)
	}
	// Reserved up front, the announced bodies would have spent the edge's
	// budget for held bodies (256 MiB): a signed body would get 503.
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.listen+"/upload", strings.NewReader("a real body"))
	req.Header.Set("X-Routing-Key", hostileKey)
	if err := signer.Sign(req); err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatalf("a signed POST alongside the %d unsent bodies: %v", n, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a signed POST alongside the %d unsent bodies: %d %s", n, resp.StatusCode, b)
	}
	if grewRSS >= 100 {
		t.Errorf("the edge's RSS grew by %.1f MiB for %d bodies announced and not sent; want under 100 MiB", grewRSS, n)
	}
	if grewHeap >= 100 {
		t.Errorf("the edge's Go heap grew by %.1f MiB for %d bodies announced and not sent (memory reserved up front); want under 100 MiB", grewHeap, n)
	}
}

// ---- 5. An upstream that never answers -------------------------------------

// TestHostileHungUpstream runs the edge with --response-timeout 1s in front
// of an upstream that reads the whole request body and then never answers.
// A client streams a chunked body in pieces, pausing under the timeout
// between them for longer than the timeout in all; it must get 504 about
// 1 s after its last byte: not while it is still sending, and not never.
func TestHostileHungUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	received := make(chan []byte, 4)
	var upstream sync.WaitGroup
	t.Cleanup(func() { close(hang); ln.Close(); upstream.Wait() })
	upstream.Add(1)
	go func() {
		defer upstream.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			upstream.Add(1)
			go func() {
				defer upstream.Done()
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				received <- body
				<-hang
			}()
		}
	}()
	const timeout = time.Second
	e := startHostile(t, "http://"+ln.Addr().String(), false, "--response-timeout", timeout.String())

	pieces := []string{"piece-1;", "piece-2;", "piece-3;", "piece-4;"}
	const pause = 400 * time.Millisecond // under the timeout; 1.2 s in all, over it
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://"+e.listen+"/upload", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Routing-Key", hostileKey)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	type answer struct {
		status int
		at     time.Time
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			answered <- answer{err: err, at: time.Now()}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode, at: time.Now()}
	}()
	tick := time.NewTicker(pause)
	defer tick.Stop()
	for i, p := range pieces {
		if i > 0 {
			select {
			case <-tick.C:
			case a := <-answered:
				t.Fatalf("answered (%d, %v) while the body was still streaming, after %d of %d pieces", a.status, a.err, i, len(pieces))
			}
		}
		if _, err := io.WriteString(pw, p); err != nil {
			t.Fatalf("piece %d: %v", i+1, err)
		}
	}
	pw.Close()
	last := time.Now()
	var a answer
	select {
	case a = <-answered:
	case <-time.After(15 * time.Second):
		t.Fatalf("no answer 15s after the last byte of the body: the client hangs on a hung upstream")
	}
	took := a.at.Sub(last)
	t.Logf("answered %d (%v) %v after the last byte of the body (--response-timeout %v)", a.status, a.err, took.Round(time.Millisecond), timeout)
	if a.err != nil || a.status != http.StatusGatewayTimeout {
		t.Fatalf("got %d (%v); want 504", a.status, a.err)
	}
	if took < timeout/2 || took > timeout+1500*time.Millisecond {
		t.Errorf("504 came %v after the last byte; want about %v", took, timeout)
	}
	select {
	case body := <-received:
		if string(body) != strings.Join(pieces, "") {
			t.Errorf("the upstream got the body %q, want %q", body, strings.Join(pieces, ""))
		}
	default:
		t.Errorf("the upstream never got the whole body")
	}
}

// ---- 6. Tunnels --------------------------------------------------------------

// echoUpstream answers websocket upgrades with 101 Switching Protocols and
// then echoes every byte; other requests get 200 "ok".
func startEchoUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
						io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
						io.Copy(c, br)
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// tunnel is a client's websocket-ish tunnel through the edge.
type tunnel struct {
	c      net.Conn
	br     *bufio.Reader
	mu     sync.Mutex // one echo at a time
	closed chan struct{}
	err    error // why the tunnel ended, once closed is
}

// openTunnel sends a signed upgrade request to the edge and checks the 101
// and an echo.
func openTunnel(t *testing.T, e *hostileEdge, signer *hmacsig.Signer) *tunnel {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req, err := http.NewRequest(http.MethodGet, "http://"+e.listen+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	var key [16]byte
	rand.Read(key[:])
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key[:]))
	req.Header.Set("X-Routing-Key", hostileKey)
	if err := signer.Sign(req); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("upgrade: %s %s", resp.Status, b)
	}
	c.SetDeadline(time.Time{})
	tn := &tunnel{c: c, br: br, closed: make(chan struct{})}
	if err := tn.echo("hello"); err != nil {
		t.Fatalf("echo through a new tunnel: %v", err)
	}
	return tn
}

// echo sends msg and reads it back within 5 s.
func (tn *tunnel) echo(msg string) error {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.c.SetDeadline(time.Now().Add(5 * time.Second))
	defer tn.c.SetDeadline(time.Time{})
	if _, err := io.WriteString(tn.c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(tn.br, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echoed %q, sent %q", got, msg)
	}
	return nil
}

// keepBusy echoes a byte every interval until the tunnel fails (closed is
// closed then, with err) or stop is closed.
func (tn *tunnel) keepBusy(interval time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if err := tn.echo("x"); err != nil {
			tn.err = err
			close(tn.closed)
			return
		}
	}
}

// awaitClose reads until the edge closes the tunnel (EOF or a reset), for
// at most d; it returns when that happened, or an error for bytes or a
// timeout instead.
func (tn *tunnel) awaitClose(d time.Duration) (time.Time, error) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	k, err := tn.br.Read(b[:])
	at := time.Now()
	switch {
	case k > 0:
		return at, fmt.Errorf("got %q instead of the end of the tunnel", b[:k])
	case errors.Is(err, io.EOF) || isReset(err):
		return at, nil
	}
	return at, fmt.Errorf("still open after %v: %v", d, err)
}

// TestHostileTunnelRevoked opens websocket tunnels through an edge
// (--tunnel-idle-timeout 1s) to an echoing upstream behind an HMAC cell:
// revoking the key a tunnel was opened with closes it within a few seconds
// while a busy tunnel of another key stays open; and a tunnel with no bytes
// either way is closed after about the idle timeout, while the busy one,
// echoing a byte every 300 ms, outlives it.
func TestHostileTunnelRevoked(t *testing.T) {
	const idle = time.Second
	e := startHostile(t, startEchoUpstream(t), true, "--tunnel-idle-timeout", idle.String())
	revoked, kept := e.createKey(t, "revoked"), e.createKey(t, "kept")
	e.waitServed(t, "/warm", revoked)
	e.waitServed(t, "/warm", kept)

	stop := make(chan struct{})
	var busy sync.WaitGroup
	t.Cleanup(func() { close(stop); busy.Wait() })
	doomed, control := openTunnel(t, e, revoked), openTunnel(t, e, kept)
	controlOpened := time.Now()
	busy.Add(1)
	go func() { defer busy.Done(); control.keepBusy(300*time.Millisecond, stop) }()

	// The doomed tunnel is kept busy too, so that only the revocation can
	// close it; it is closed once an echo fails.
	busy.Add(1)
	go func() { defer busy.Done(); doomed.keepBusy(300*time.Millisecond, stop) }()
	if out, err := cliRun(e.bin, e.grpc, "", "key", "revoke", revoked.KeyID, "--wait"); err != nil {
		t.Fatalf("key revoke: %v\n%s", err, out)
	}
	revokedAt := time.Now()
	select {
	case <-doomed.closed:
		if err := doomed.err; !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
			t.Fatalf("the tunnel of the revoked key stopped echoing without being closed: %v", err)
		}
		t.Logf("the tunnel of the revoked key closed %v after `key revoke --wait` returned (%v)", time.Since(revokedAt).Round(time.Millisecond), doomed.err)
	case <-control.closed:
		t.Fatalf("the tunnel of the key not revoked closed: %v", control.err)
	case <-time.After(5 * time.Second):
		t.Fatalf("the tunnel of a revoked key still echoes 5s after the revocation reached every edge")
	}
	if status, body, err := e.get("/after-revoke", revoked); err != nil || status != http.StatusUnauthorized {
		t.Errorf("a new request with the revoked key: %d %q %v; want 401", status, body, err)
	}

	// An idle tunnel of the kept key.
	quiet := openTunnel(t, e, kept)
	lastByte := time.Now()
	closedAt, err := quiet.awaitClose(idle + 4*time.Second)
	if err != nil {
		t.Fatalf("an idle tunnel with --tunnel-idle-timeout %v: %v", idle, err)
	}
	t.Logf("the idle tunnel closed %v after its last byte (--tunnel-idle-timeout %v)", closedAt.Sub(lastByte).Round(time.Millisecond), idle)
	if d := closedAt.Sub(lastByte); d < idle/2 {
		t.Errorf("the idle tunnel was closed %v after its last byte, before the %v idle timeout", d, idle)
	}
	// The busy tunnel must outlive the idle timeout several times over:
	// watched until it has been open for three of them (a pause of known
	// length, part of the scenario).
	select {
	case <-control.closed:
		t.Fatalf("the busy tunnel closed after %v: %v", time.Since(controlOpened).Round(time.Millisecond), control.err)
	case <-time.After(time.Until(controlOpened.Add(3 * idle))):
	}
	if err := control.echo("still here"); err != nil {
		t.Fatalf("the busy tunnel, open %v: %v", time.Since(controlOpened).Round(time.Millisecond), err)
	}
	t.Logf("the busy tunnel (a byte echoed every 300ms) still echoes after %v", time.Since(controlOpened).Round(time.Millisecond))
}
