package edgenode

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/tlsterm"
	"github.com/edgecell/edgecell/internal/testutil"
)

// TestHTTPSOnListenWithoutTLSListen: certificates without TLSListen make
// Listen serve HTTPS only (TLSAddr is Addr); with TLSListen, Listen stays
// HTTP and TLSAddr is the other listener.
func TestHTTPSOnListenWithoutTLSListen(t *testing.T) {
	be := backend(t, "b1")
	ca := testutil.NewServerCA(t)
	certFile, keyFile := ca.IssueFiles(t, t.TempDir(), "edge", "edge.example")
	certs, err := tlsterm.New([]tlsterm.Pair{{Cert: certFile, Key: keyFile}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "edge.example"}}
	t.Cleanup(tr.CloseIdleConnections)
	httpsGet := func(addr string) (string, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
		req.Header.Set("X-Routing-Key", "acme")
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	dir := t.TempDir()
	writeCache(t, dir, stateFor(7, be.URL))
	n := start(t, Config{Name: "edge-1", Region: "us-east", DataDir: dir, Listen: "127.0.0.1:0",
		HTTPS: certs, Coordinators: []string{deadAddr(t)}})
	if n.TLSAddr() != n.Addr() {
		t.Fatalf("TLSAddr %q, want Addr %q", n.TLSAddr(), n.Addr())
	}
	if got, err := httpsGet(n.Addr()); err != nil || got != "b1 /x" {
		t.Fatalf("HTTPS on Listen: %q, %v", got, err)
	}
	if resp, err := http.Get("http://" + n.Addr() + "/x"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was proxied on an HTTPS-only Listen")
		}
	}
	n.Close()

	dir = t.TempDir()
	writeCache(t, dir, stateFor(7, be.URL))
	n = start(t, Config{Name: "edge-1", Region: "us-east", DataDir: dir, Listen: "127.0.0.1:0",
		HTTPS: certs, TLSListen: "127.0.0.1:0", Coordinators: []string{deadAddr(t)}})
	if n.TLSAddr() == n.Addr() || n.TLSAddr() == "" {
		t.Fatalf("TLSAddr %q next to Addr %q", n.TLSAddr(), n.Addr())
	}
	if got, err := httpsGet(n.TLSAddr()); err != nil || got != "b1 /x" {
		t.Fatalf("HTTPS on TLSListen: %q, %v", got, err)
	}
	if code, body, _ := get(t, "http://"+n.Addr()+"/x", "acme"); code != 200 || body != "b1 /x" {
		t.Fatalf("HTTP on Listen: %d %q", code, body)
	}

	_, err = Start(context.Background(), Config{Name: "e", Region: "r", DataDir: t.TempDir(), Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0"})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("TLSListen without HTTPS: %v, want ErrInvalidConfig", err)
	}
}
