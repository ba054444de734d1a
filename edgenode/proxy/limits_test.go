package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
	"github.com/edgecell/edgecell/hmacsig"
	"github.com/edgecell/edgecell/internal/testutil"
)

// expectClosed waits (up to within) for the edge to close c, skipping what
// it sends first, and returns that.
func expectClosed(t *testing.T, c net.Conn, within time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (got %q)", within, b)
	}
	return string(b)
}

// keptAlive sends request number i on c and checks that it gets 200 and
// keeps the connection open.
func keptAlive(t *testing.T, c net.Conn, br *bufio.Reader, i int, raw string) {
	t.Helper()
	io.WriteString(c, raw)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request %d: %v", i, err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("request %d: %d, close=%v", i, resp.StatusCode, resp.Close)
	}
}

// TestHeadTimeout: a head that trickles in (slowloris) gets 408 and the
// connection closes once HeadTimeout passed, counted in the metrics; a new
// connection that sends nothing is closed as soon; a keep-alive
// connection may idle past HeadTimeout (up to ClientIdleTimeout) before
// its next request.
func TestHeadTimeout(t *testing.T) {
	be := backend(t, "b1")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	const head = 300 * time.Millisecond
	h := startProxy(t, tb, func(c *Config) { c.HeadTimeout, c.ClientIdleTimeout = head, 3*time.Second })

	t.Run("slowloris", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		start := time.Now()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go func() { // one more header byte every 50 ms, never the end of the head
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := io.WriteString(c, "X"); err != nil {
						return
					}
				}
			}
		}()
		got := expectClosed(t, c, 5*time.Second)
		if took := time.Since(start); took < head || took > head+time.Second {
			t.Errorf("closed after %v, want about %v", took, head)
		}
		if !strings.HasPrefix(got, "HTTP/1.1 408 ") || !strings.Contains(got, "request head timed out") {
			t.Errorf("answer %q, want 408", got)
		}
	})
	t.Run("silent new connection", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		start := time.Now()
		if got := expectClosed(t, c, 5*time.Second); got != "" {
			t.Errorf("answered %q to nothing", got)
		}
		if took := time.Since(start); took > head+time.Second {
			t.Errorf("closed after %v, want about %v", took, head)
		}
	})
	t.Run("keep-alive idles longer", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		br := bufio.NewReader(c)
		for i := range 2 {
			if i == 1 {
				// Idle for three head timeouts: the scenario, not a wait
				// for something to happen.
				<-time.After(3 * head)
			}
			keptAlive(t, c, br, i, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\n\r\n")
		}
	})
	if n := h.metrics.Timeouts("head"); n < 1 {
		t.Errorf("head timeouts counted %d", n)
	}
}

// TestIdleTimeout: a keep-alive connection with no next request is closed
// after ClientIdleTimeout, silently, and counted.
func TestIdleTimeout(t *testing.T) {
	be := backend(t, "b1")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, func(c *Config) { c.HeadTimeout, c.ClientIdleTimeout = 200*time.Millisecond, 500*time.Millisecond })
	c := dialRaw(t, h.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d, %v: want the connection closed", n, err)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 2*time.Second {
		t.Errorf("closed %v after the response, want about 500ms", took)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := h.metrics.Timeouts("idle"); n != 1 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
}

// TestConnectionCap: at MaxConns the edge accepts no more (the next
// client waits in the backlog, unserved) and reports itself overloaded;
// once a connection closes, the waiting one is served.
func TestConnectionCap(t *testing.T) {
	be := backend(t, "b1")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, func(c *Config) { c.MaxConns = 2 })
	get := func(c net.Conn, within time.Duration) error {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(within))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	first, second := dialRaw(t, h.addr), dialRaw(t, h.addr)
	for _, c := range []net.Conn{first, second} {
		if err := get(c, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if why := h.srv.Load().Overloaded(time.Now()); !strings.Contains(why, "at the cap (2)") {
		t.Fatalf("Overloaded() = %q at the cap", why)
	}
	third := dialRaw(t, h.addr) // the kernel completes the handshake; the edge does not accept
	// Refused service is a non-event: bounded by a short wait.
	if err := get(third, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection served past the cap (%v)", err)
	}
	first.Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("third connection once a slot freed: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := h.srv.Load().Conns; got != 2 {
		t.Errorf("Load().Conns = %d, want 2", got)
	}
}

// TestHeldBodiesGrowAsBytesArriveWithinTheBudget: a signed head announcing
// 1 MiB holds only what arrived; a body that would take the edge past
// MaxHeldBodyBytes gets 503 with Retry-After and never reaches the
// upstream; the budget is given back when a request is done.
func TestHeldBodiesGrowAsBytesArriveWithinTheBudget(t *testing.T) {
	const budget = 16 << 10
	s := startAuth(t, func(c *Config) { c.MaxHeldBodyBytes = budget })
	live := &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}

	big := strings.Repeat("m", 1<<20)
	req := s.signed(t, live, "POST", "signed-big", "/announced", big)
	slow := dialRaw(t, s.addr)
	fmt.Fprintf(slow, "POST /announced HTTP/1.1\r\nHost: edge\r\nX-Routing-Key: signed-big\r\nContent-Length: %d\r\n"+
		"X-Key-Id: k_live\r\nX-Timestamp: %s\r\nX-Nonce: %s\r\nX-Signature: %s\r\n\r\n%s",
		len(big), req.Header.Get("X-Timestamp"), req.Header.Get("X-Nonce"), req.Header.Get("X-Signature"), big[:100])
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := s.srv.Load().HeldBodyBytes; n != bufSize {
			return fmt.Errorf("held %d bytes, want %d (room for what came, not the 1 MiB announced)", n, bufSize)
		}
		return nil
	})

	body := strings.Repeat("o", 14<<10) // room of 16 KiB, with the 4 KiB held: past the budget
	status, eb, resp := s.send(t, s.signed(t, live, "POST", "signed-big", "/over", body))
	if status != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(eb.Reason, "held request bodies") {
		t.Fatalf("over the budget: %d %+v Retry-After %q", status, eb, resp.Header.Get("Retry-After"))
	}
	if n := len(s.up.seen()); n != 0 {
		t.Fatalf("upstream got %d requests", n)
	}
	if n := s.srv.Load().OverBudget; n != 1 {
		t.Errorf("OverBudget = %d", n)
	}

	slow.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := s.srv.Load().HeldBodyBytes; n != 0 {
			return fmt.Errorf("held %d bytes", n)
		}
		return nil
	})
	if status, eb, _ := s.send(t, s.signed(t, live, "POST", "signed-big", "/fits", body)); status != 200 {
		t.Fatalf("within the budget: %d %+v", status, eb)
	}
	if n := s.srv.Load().HeldBodyBytes; n != 0 {
		t.Errorf("held %d bytes after the request", n)
	}
}

// TestStreamedBodyThenHungUpstream: the response timeout starts once a
// streamed body was sent whole: an upstream that read it all and never
// answers gets the client a 504 that long after its last byte.
func TestStreamedBodyThenHungUpstream(t *testing.T) {
	read := make(chan struct{})
	up := serveRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		close(read)
		io.Copy(io.Discard, c) // and never answer
	})
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	const timeout = 300 * time.Millisecond
	h := startProxy(t, tb, func(c *Config) { c.ResponseTimeout = timeout })
	c := dialRaw(t, h.addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 3 {
		// A body slower than the response timeout in all: pauses are the scenario.
		<-time.After(timeout / 2)
		io.WriteString(c, "5\r\nhello\r\n")
	}
	io.WriteString(c, "0\r\n\r\n")
	last := time.Now()
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		b, err := io.ReadAll(c)
		t.Fatalf("upstream never got the whole body; client got %q %v", b, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(last); resp.StatusCode != 504 || took < timeout || took > timeout+2*time.Second {
		t.Fatalf("%d after %v, want 504 after about %v", resp.StatusCode, took, timeout)
	}
}

// TestClientGoneMidBody: a client that goes away in the middle of a
// streamed body does not leave the upstream waiting for the rest, and
// does not count against the endpoint.
func TestClientGoneMidBody(t *testing.T) {
	ended := make(chan error, 1)
	started := make(chan struct{}) // the upstream has the head and the first of the body
	up := serveRaw(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			ended <- err
			return
		}
		_, err = io.CopyN(io.Discard, req.Body, 1)
		close(started)
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		ended <- err
	})
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	h := startProxy(t, tb, nil)
	c := dialRaw(t, h.addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 10000))
	select {
	case <-started:
	case err := <-ended:
		t.Fatalf("upstream failed before the body came: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	c.Close()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("upstream read the whole body")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream still waiting for the body 5s after the client left")
	}
	it := tb.Lookup([]byte("acme")).Candidates(0)
	ep := it.Next()
	for _, o := range ep.Gate.TakeOutcomes() {
		if o.ConnectErrors != 0 || o.Timeouts != 0 {
			t.Errorf("the client's departure counted against the endpoint: %v", o)
		}
	}
}

// TestStreamedBodiesKeepTheirConnections: after a streamed body the client
// and upstream connections stay open for the next request.
func TestStreamedBodiesKeepTheirConnections(t *testing.T) {
	var conns atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	be.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	c := dialRaw(t, h.addr)
	br := bufio.NewReader(c)
	body := strings.Repeat("s", 64<<10) // larger than the connection's buffer: it streams
	for i := range 20 {
		keptAlive(t, c, br, i, fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream saw %d connections for 20 requests, want 1", n)
	}
}

// emfileListener fails its first accepts with EMFILE, as a process out of
// file descriptors would, then accepts normally.
type emfileListener struct {
	net.Listener
	fail atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fail.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfFileDescriptors: EMFILE from accept is a pause, not the
// end of Serve: it is counted, reported as overload, and the edge serves
// once descriptors are back.
func TestAcceptOutOfFileDescriptors(t *testing.T) {
	be := backend(t, "b1")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	table := &atomic.Pointer[route.Table]{}
	table.Store(tb)
	srv := New(Config{Region: "us-east", Table: table})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	el := &emfileListener{Listener: ln}
	el.fail.Store(3)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(el) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/") // no routing key: 400, from the edge
	if err != nil {
		t.Fatalf("edge stopped serving after EMFILE: %v", err)
	}
	resp.Body.Close()
	l := srv.Load()
	if l.AcceptErrors != 3 || resp.StatusCode != 400 {
		t.Errorf("status %d, AcceptErrors %d; want 400 after 3 failed accepts", resp.StatusCode, l.AcceptErrors)
	}
	if why := l.Overloaded(time.Now()); !strings.Contains(why, "accepting connections failed") {
		t.Errorf("Overloaded() = %q right after EMFILE", why)
	}
	if why := l.Overloaded(time.Now().Add(overloadMemory)); why != "" {
		t.Errorf("Overloaded() = %q %v later", why, overloadMemory)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	if err := <-served; err != ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
}

// TestIdleConnectionsGiveTheirBuffersBack: keep-alive connections idle for
// a head timeout give their read and write buffers (and heads) back, so
// that many idle clients cost their goroutines and little else.
func TestIdleConnectionsGiveTheirBuffersBack(t *testing.T) {
	be := backend(t, "b1")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, func(c *Config) { c.HeadTimeout, c.ClientIdleTimeout = 200*time.Millisecond, time.Minute })
	heap := func() uint64 {
		runtime.GC()
		runtime.GC() // sync.Pool keeps what it is given for one more cycle
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	const n = 500
	base := heap()
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dialRaw(t, h.addr)
		keptAlive(t, conns[i], bufio.NewReader(conns[i]), i, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\n\r\n")
	}
	// Busy, a connection holds two 4 KiB buffers and its heads, about
	// 13 KiB of heap with both ends of its socket (measured); idle, what is
	// left (the conn, both sockets) is about 3.5 KiB.
	testutil.Eventually(t, 5*time.Second, func() error {
		if now := heap(); now > base+n*6<<10 {
			return fmt.Errorf("heap in use %d KiB with %d idle connections, %d KiB without any: want under 6 KiB a connection", now>>10, n, base>>10)
		}
		return nil
	})
	for i, c := range conns { // and they still serve
		keptAlive(t, c, bufio.NewReader(c), i, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: acme\r\n\r\n")
	}
}
