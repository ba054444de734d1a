package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/testutil"
)

// TestEdgeServesHTTPS runs a real edge with --listen (HTTP) and
// --tls-listen with two certificates: each is served to its SNI name,
// requests over both reach the upstream with their bodies and the scheme
// they came with, and a rewritten certificate is served without a restart.
func TestEdgeServesHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a coordinator and an edge as processes; skipped with -short")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s body=%q proto=%s", r.Method, r.URL.Path, b, r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(backend.Close)
	grpcAddr, _ := oneCellCluster(t, bin, dir, backend.URL)

	ca := testutil.NewServerCA(t)
	wwwCert, wwwKey := ca.IssueFiles(t, dir, "www", "www.example")
	apiCert, apiKey := ca.IssueFiles(t, dir, "api", "api.example")
	listen, tlsListen := freeAddr(t), freeAddr(t)
	startProcess(t, "edge", bin, "edge", "--name", "edge-us-east", "--region", "us-east",
		"--data-dir", filepath.Join(dir, "edge"), "--listen", listen, "--tls-listen", tlsListen,
		"--tls-cert", wwwCert, "--tls-key", wwwKey, "--tls-cert", apiCert, "--tls-key", apiKey,
		"--coordinators", grpcAddr)

	post := func(c *http.Client, url string) (string, *tls.ConnectionState, error) {
		req, _ := http.NewRequest("POST", url+"/upload", strings.NewReader("hello"))
		req.Header.Set("X-Routing-Key", "tenant-1")
		resp, err := c.Do(req)
		if err != nil {
			return "", nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), resp.TLS, err
	}
	httpsClient := func(name string) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: name}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(plain.CloseIdleConnections)
	eventually(t, "the edge proxies over HTTP", func() error {
		got, _, err := post(plain, "http://"+listen)
		if err == nil && got != `POST /upload body="hello" proto=http` {
			err = fmt.Errorf("got %q", got)
		}
		return err
	})
	for _, name := range []string{"www.example", "api.example"} {
		got, st, err := post(httpsClient(name), "https://"+tlsListen)
		if err != nil || got != `POST /upload body="hello" proto=https` {
			t.Fatalf("HTTPS with SNI %s: %q, %v", name, got, err)
		}
		if served := st.PeerCertificates[0].DNSNames; len(served) != 1 || served[0] != name {
			t.Fatalf("HTTPS with SNI %s: served the certificate of %v", name, served)
		}
	}

	// Rotation: api.example's pair rewritten with one more name; new
	// handshakes see it, with the process still the same.
	ca.IssueFiles(t, dir, "api", "api.example", "api2.example")
	eventually(t, "a handshake for api2.example with the rewritten certificate", func() error {
		c := httpsClient("api2.example")
		defer c.CloseIdleConnections()
		_, _, err := post(c, "https://"+tlsListen)
		return err
	})
}
