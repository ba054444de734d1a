package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
)

// TestSwapUnderConcurrentRequests: requests racing a stream of table swaps
// all succeed, each is served wholly by one table (the endpoint and the
// path prefix it reports come from the same version) and a client never
// sees the version go back.
func TestSwapUnderConcurrentRequests(t *testing.T) {
	readModes(t, testSwapUnderConcurrentRequests)
}

func testSwapUnderConcurrentRequests(t *testing.T, mode func(*Config)) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	defer be.Close()
	version := func(v int) cellSpec {
		return cellSpec{fmt.Sprintf("c%d", v), []string{fmt.Sprintf("e%d=%s/v%d", v, be.URL, v)}}
	}
	table := func(v int) *route.Table {
		return buildTable(t, uint64(v), "", map[string]string{"k": fmt.Sprintf("c%d", v)}, version(v))
	}
	h := startProxy(t, buildTable(t, 1, "", map[string]string{"k": "c1"}, version(1)), mode)

	// Swap continuously until the clients have made enough requests.
	var completed atomic.Int64
	done := make(chan struct{})
	var versions int
	go func() {
		defer close(done)
		for versions = 2; completed.Load() < 2000; versions++ {
			h.table.Store(table(versions))
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(t)
			last := 0
			for n := 0; ; n++ {
				select {
				case <-done:
					if n > 0 {
						return
					}
				default:
				}
				resp, err := c.Do(h.request("GET", "k", "/req", nil))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var ev, pv int
				fmt.Sscanf(resp.Header.Get("X-Edge-Endpoint"), "e%d@us-east", &ev)
				fmt.Sscanf(string(b), "/v%d/req", &pv)
				if resp.StatusCode != 200 || ev == 0 || ev != pv || ev < last {
					errs <- fmt.Errorf("status %d endpoint %q body %q after version %d", resp.StatusCode, resp.Header.Get("X-Edge-Endpoint"), b, last)
					return
				}
				last = ev
				completed.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if versions < 50 {
		t.Fatalf("only %d tables swapped in during the requests", versions)
	}
}

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	}))
	defer be.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)

	// An idle keep-alive connection...
	idle, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\n\r\n")
	buf := make([]byte, 4096)
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := idle.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "done /fast") {
		t.Fatalf("first request on the idle connection: %q %v", buf[:n], err)
	}
	// ...and a request in flight.
	result := make(chan string, 1)
	go func() {
		resp, err := client(t).Do(h.request("GET", "acme", "/slow", nil))
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- fmt.Sprintf("%d %s close=%v", resp.StatusCode, b, resp.Close)
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- h.srv.Shutdown(ctx)
	}()
	poll(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", h.addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if n, err := idle.Read(buf); err != io.EOF {
		t.Fatalf("idle connection after Shutdown: read %q %v, want EOF", buf[:n], err)
	}
	close(release)
	if got := <-result; got != "200 done /slow close=true" {
		t.Fatalf("request in flight: %s", got)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestTLSEndpoint(t *testing.T) {
	be := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v %s", r.TLS != nil, r.URL.Path)
	}))
	defer be.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL + "/secure"}})
	roots := be.Client().Transport.(*http.Transport).TLSClientConfig
	h := startProxy(t, tb, func(c *Config) { c.TLSConfig = roots })
	c := client(t)
	for range 3 { // the second and third reuse the pooled TLS connection
		resp, body := h.get(t, c, "acme", "/x")
		if resp.StatusCode != 200 || body != "tls=true /secure/x" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
}
