package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

// cellSpec is a cell for a test table: endpoint id -> URL, all in region us-east
// unless the id has a "@region" suffix.
type cellSpec struct {
	id  string
	eps []string // "id=url" or "id@region=url"
}

func buildTable(t testing.TB, rev uint64, defaultCell string, placements map[string]string, cells ...cellSpec) *route.Table {
	t.Helper()
	st := &pb.State{Revision: rev, Config: &pb.RoutingConfig{
		DefaultCell: defaultCell,
		Latencies:   []*pb.Latency{{From: "us-east", To: "eu-west", OneWayMs: 40}},
	}}
	for _, c := range cells {
		pc := &pb.Cell{Id: c.id}
		for _, e := range c.eps {
			idr, u, _ := strings.Cut(e, "=")
			id, region, ok := strings.Cut(idr, "@")
			if !ok {
				region = "us-east"
			}
			pc.Endpoints = append(pc.Endpoints, &pb.Endpoint{Id: id, Url: u, Region: region})
		}
		st.Config.Cells = append(st.Config.Cells, pc)
	}
	for k, c := range placements {
		st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: k, Cell: c})
	}
	tb, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

type harness struct {
	srv     *Server
	table   *atomic.Pointer[route.Table]
	addr    string
	metrics *Metrics
}

func startProxy(t testing.TB, tb *route.Table, tweak func(*Config)) *harness {
	t.Helper()
	h := &harness{table: &atomic.Pointer[route.Table]{}, metrics: NewMetrics()}
	h.table.Store(tb)
	// Tests read X-Edge-Route; TestDebugHeaderPolicy checks the default.
	cfg := Config{Region: "us-east", Table: h.table, Metrics: h.metrics, DebugHeader: DebugOn}
	if tweak != nil {
		tweak(&cfg)
	}
	h.srv = New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return h
}

// readModes runs fn once per way of reading connections.
func readModes(t *testing.T, fn func(t *testing.T, mode func(*Config))) {
	for name, m := range map[string]ReadMode{"wait-first": WaitFirst, "read-first": ReadFirst} {
		t.Run(name, func(t *testing.T) { fn(t, func(c *Config) { c.ReadMode = m }) })
	}
}

// client returns an HTTP client with its own connection pool, closed at cleanup.
func client(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (h *harness) url(path string) string { return "http://" + h.addr + path }

// request makes a request to the proxy with routing key key (none if empty).
func (h *harness) request(method, key, path string, body io.Reader) *http.Request {
	req, _ := http.NewRequest(method, h.url(path), body)
	if key != "" {
		req.Header.Set("X-Routing-Key", key)
	}
	return req
}

// do sends a request through c and returns the response with its whole body.
func (h *harness) do(t testing.TB, c *http.Client, method, key, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(h.request(method, key, path, body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

func (h *harness) get(t testing.TB, c *http.Client, key, path string) (*http.Response, string) {
	t.Helper()
	return h.do(t, c, "GET", key, path, nil)
}

// serveRaw runs handle on every connection accepted on a loopback listener,
// for upstreams that misbehave in ways net/http would not; it returns the URL.
func serveRaw(t testing.TB, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// dialRaw opens a client connection to addr that gives up after 10s.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// backend is an httptest server answering with its name, method, path and selected headers.
func backend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s %s body=%d", name, r.Method, r.URL.RequestURI(), len(body))
	}))
	t.Cleanup(s.Close)
	return s
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t testing.TB) string { return edgetest.ClosedAddr(t) }

// poll waits for cond with a deadline instead of sleeping a fixed time.
func poll(t testing.TB, what string, cond func() bool) { t.Helper(); testutil.Poll(t, what, cond) }
