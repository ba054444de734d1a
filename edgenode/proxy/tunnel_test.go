package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
)

// websocketEcho is an upstream that switches to websocket and echoes.
func websocketEcho(t *testing.T) string {
	return serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		io.Copy(c, br)
	})
}

// openTunnel upgrades a connection to the proxy (with extra head fields)
// and checks that it echoes.
func openTunnel(t *testing.T, addr, extra string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialRaw(t, addr)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+extra+"\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(c, "ping\n")
	if got, err := br.ReadString('\n'); got != "ping\n" {
		t.Fatalf("echo: %q %v", got, err)
	}
	return c, br
}

// expectTunnelClosed waits for the edge to close a tunnel.
func expectTunnelClosed(t *testing.T, c net.Conn, br *bufio.Reader, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("tunnel still open after %v (read %d, %v)", within, n, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestTunnelIdleTimeout: a tunnel with no byte either way for
// TunnelIdleTimeout is closed; one busy in a single direction is not.
func TestTunnelIdleTimeout(t *testing.T) {
	up := websocketEcho(t)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	const idle = 300 * time.Millisecond
	h := startProxy(t, tb, func(c *Config) { c.TunnelIdleTimeout = idle })

	busy, busyR := openTunnel(t, h.addr, "X-Routing-Key: acme\r\n")
	quiet, quietR := openTunnel(t, h.addr, "X-Routing-Key: acme\r\n")
	start := time.Now()
	tick := time.NewTicker(idle / 3)
	defer tick.Stop()
	for time.Since(start) < 3*idle { // traffic on the busy tunnel for three idle timeouts
		<-tick.C
		io.WriteString(busy, "x\n")
		if got, err := busyR.ReadString('\n'); got != "x\n" {
			t.Fatalf("busy tunnel closed after %v: %q %v", time.Since(start), got, err)
		}
	}
	expectTunnelClosed(t, quiet, quietR, time.Second) // long since idle
	if n := h.metrics.Timeouts("tunnel"); n != 1 {
		t.Errorf("tunnel timeouts counted %d, want 1", n)
	}
}

// TestTunnelClosedOnRevocation: a tunnel opened with an API key closes when
// the edge applies a table in which the key is revoked; one opened with
// another key stays.
func TestTunnelClosedOnRevocation(t *testing.T) {
	up := websocketEcho(t)
	st := authTestState(up, "http://"+edgetest.ClosedAddr(t)+"/jwks", "http://"+edgetest.ClosedAddr(t)+"/jwks")
	st.Keys = append(st.Keys, &pb.ApiKey{Id: "k_other", Secrets: []*pb.KeySecret{{Secret: string(liveSecret)}}})
	tb, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, tb, func(c *Config) { c.Nonces = &memNonces{seen: map[string]int64{}} })
	signedHead := func(keyID string) string {
		req, _ := http.NewRequest("GET", "http://x/ws", nil)
		req.Header.Set("X-Routing-Key", "signed")
		if err := (&hmacsig.Signer{KeyID: keyID, Secret: liveSecret}).Sign(req); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, k := range []string{"X-Routing-Key", "X-Key-Id", "X-Timestamp", "X-Nonce", "X-Signature"} {
			b.WriteString(k + ": " + req.Header.Get(k) + "\r\n")
		}
		return b.String()
	}
	revoked, revokedR := openTunnel(t, h.addr, signedHead("k_live"))
	kept, keptR := openTunnel(t, h.addr, signedHead("k_other"))

	for _, k := range st.Keys {
		if k.Id == "k_live" {
			k.Revoked, k.Secrets = true, nil
		}
	}
	st.Revision++
	next, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	h.table.Store(next)
	if n := h.srv.Revalidate(next); n != 1 {
		t.Errorf("Revalidate closed %d tunnels, want 1", n)
	}
	expectTunnelClosed(t, revoked, revokedR, 2*time.Second)
	io.WriteString(kept, "still\n")
	if got, err := keptR.ReadString('\n'); got != "still\n" {
		t.Fatalf("the other key's tunnel: %q %v", got, err)
	}
}
