package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/tlsterm"
	"github.com/edgecell/edgecell/internal/testutil"
)

// TestProxyOverTLS: requests over HTTPS (TLS terminated on the proxy's
// listener) reach the upstream with their bodies, small and streamed, on
// kept-alive connections, and the upstream learns the scheme was https.
func TestProxyOverTLS(t *testing.T) {
	readModes(t, func(t *testing.T, mode func(*Config)) {
		up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			sum := sha256.Sum256(b)
			fmt.Fprintf(w, "%s %d %s proto=%s", r.Method, len(b), hex.EncodeToString(sum[:8]), r.Header.Get("X-Forwarded-Proto"))
		})
		srv := backendHandler(t, up)
		tb := buildTable(t, 1, "", map[string]string{"k": "c"}, cellSpec{"c", []string{"b=" + srv}})
		ca := testutil.NewServerCA(t)
		certFile, keyFile := ca.IssueFiles(t, t.TempDir(), "edge", "edge.example")
		certs, err := tlsterm.New([]tlsterm.Pair{{Cert: certFile, Key: keyFile}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := startProxy(t, tb, mode)
		addr := startTLSProxy(t, h, certs)
		if _, got := h.do(t, client(t), "POST", "k", "/plain", strings.NewReader("abc")); !strings.HasSuffix(got, " proto=http") {
			t.Errorf("plain HTTP next to HTTPS: %q, want proto=http", got)
		}

		// Offering h2 as browsers do: the edge must answer with http/1.1.
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "edge.example"}, ForceAttemptHTTP2: true, DisableCompression: true}
		t.Cleanup(tr.CloseIdleConnections)
		c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		conns := 0
		for _, size := range []int{0, 100, 3000, 1 << 20} {
			body := strings.Repeat("x", size)
			sum := sha256.Sum256([]byte(body))
			trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
				if !ci.Reused {
					conns++
				}
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
				"POST", "https://"+addr+"/upload", strings.NewReader(body))
			req.Header.Set("X-Routing-Key", "k")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("POST %d bytes: %v", size, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := fmt.Sprintf("POST %d %s proto=https", size, hex.EncodeToString(sum[:8]))
			if resp.StatusCode != 200 || string(got) != want {
				t.Fatalf("POST %d bytes: %d %q, want 200 %q", size, resp.StatusCode, got, want)
			}
			if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("POST %d bytes: not over TLS with ALPN http/1.1: %+v", size, resp.TLS)
			}
		}
		if conns != 1 {
			t.Errorf("%d TLS connections for 4 requests, want 1 kept alive", conns)
		}
	})
}

// backendHandler serves h over plain HTTP and returns its URL.
func backendHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return "http://" + ln.Addr().String()
}

// startTLSProxy starts the proxy as the edge runs it with --tls-listen: one
// Server serving plain HTTP (h.addr) and HTTPS with certs, on a TLS
// listener; it returns the HTTPS address. Shutdown (at cleanup) closes both.
func startTLSProxy(t *testing.T, h *harness, certs *tlsterm.Certificates) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(tls.NewListener(ln, certs.Config())) }()
	t.Cleanup(func() {
		// Before startProxy's cleanup (cleanups run last first): Shutdown
		// here, which that one repeats, or Serve would not return.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve(TLS) returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}
