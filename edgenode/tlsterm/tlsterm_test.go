package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/testutil"
)

// serve runs a TLS listener with certs' Config that answers "ok" to every
// connection; it returns the address.
func serve(t *testing.T, certs *Certificates) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln := tls.NewListener(ln, certs.Config())
	t.Cleanup(func() { tln.Close() })
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write([]byte("ok"))
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake connects with SNI name (none if empty), verifying the served
// certificate for verifyAs against ca, and returns the connection state.
func handshake(t *testing.T, addr, name, verifyAs string, ca *testutil.ServerCA, tweak func(*tls.Config)) (tls.ConnectionState, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: name}
	if verifyAs != name {
		// The client asks for one name and expects another's certificate
		// (or none): verify by hand below.
		cfg.InsecureSkipVerify = true
	}
	if tweak != nil {
		tweak(cfg)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	if _, err := io.ReadAll(c); err != nil {
		return tls.ConnectionState{}, err
	}
	st := c.ConnectionState()
	if verifyAs != "" && verifyAs != name {
		if _, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
			t.Fatalf("SNI %q: %v", name, err)
		}
		if err := st.PeerCertificates[0].VerifyHostname(verifyAs); err != nil {
			t.Fatalf("SNI %q: served certificate %v: %v", name, st.PeerCertificates[0].DNSNames, err)
		}
	}
	return st, nil
}

func pairs(t *testing.T, ca *testutil.ServerCA) (dir string, ps []Pair) {
	dir = t.TempDir()
	for _, x := range []struct{ base, names []string }{
		{[]string{"default"}, []string{"default.example", "127.0.0.1"}},
		{[]string{"api"}, []string{"api.example"}},
		{[]string{"wild"}, []string{"*.apps.example"}},
	} {
		c, k := ca.IssueFiles(t, dir, x.base[0], x.names...)
		ps = append(ps, Pair{Cert: c, Key: k})
	}
	return dir, ps
}

// start serves three pairs (the default, api.example, *.apps.example) with
// a fresh CA.
func start(t *testing.T) (ca *testutil.ServerCA, dir string, ps []Pair, certs *Certificates, addr string) {
	t.Helper()
	ca = testutil.NewServerCA(t)
	dir, ps = pairs(t, ca)
	certs, err := New(ps, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir, ps, certs, serve(t, certs)
}

func TestCertificateBySNI(t *testing.T) {
	ca, _, _, _, addr := start(t)
	for _, tc := range []struct{ sni, want string }{
		{"api.example", "api.example"},
		{"API.Example", "api.example"},
		{"default.example", "default.example"},
		{"one.apps.example", "one.apps.example"},
		{"unknown.example", "default.example"}, // unknown SNI: the default
		{"", "default.example"},                // no SNI: the default
	} {
		st, err := handshake(t, addr, tc.sni, tc.want, ca, nil)
		if err != nil {
			t.Fatalf("SNI %q: %v", tc.sni, err)
		}
		if st.Version < tls.VersionTLS12 || st.NegotiatedProtocol != "" && st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("SNI %q: version %x, ALPN %q", tc.sni, st.Version, st.NegotiatedProtocol)
		}
	}
	// A client that verifies the name it asked for fails on the default's.
	if _, err := handshake(t, addr, "unknown.example", "unknown.example", ca, nil); err == nil {
		t.Error("a handshake for unknown.example verified the default certificate")
	}
}

func TestVersionsAndALPN(t *testing.T) {
	ca, _, _, _, addr := start(t)
	_, err := handshake(t, addr, "api.example", "api.example", ca, func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 })
	if err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	st, err := handshake(t, addr, "api.example", "api.example", ca, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	if err != nil || st.Version != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2: version %x, %v", st.Version, err)
	}
	st, err = handshake(t, addr, "api.example", "api.example", ca, func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} })
	if err != nil || st.NegotiatedProtocol != "http/1.1" || st.Version != tls.VersionTLS13 {
		t.Fatalf("h2,http/1.1 client: ALPN %q, version %x, %v", st.NegotiatedProtocol, st.Version, err)
	}
	// h2 only: there is no protocol in common; the handshake is refused
	// rather than the client speaking HTTP/2 to an HTTP/1.1 server.
	if _, err := handshake(t, addr, "api.example", "api.example", ca, func(c *tls.Config) { c.NextProtos = []string{"h2"} }); err == nil {
		t.Error("an h2-only client completed the handshake")
	}
}

func TestSessionResumption(t *testing.T) {
	ca, _, _, _, addr := start(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cache := tls.NewLRUClientSessionCache(8)
		tweak := func(c *tls.Config) { c.ClientSessionCache, c.MaxVersion = cache, v }
		first, err := handshake(t, addr, "api.example", "api.example", ca, tweak)
		if err != nil || first.DidResume {
			t.Fatalf("version %x: first handshake: resumed %v, %v", v, first.DidResume, err)
		}
		second, err := handshake(t, addr, "api.example", "api.example", ca, tweak)
		if err != nil || !second.DidResume {
			t.Fatalf("version %x: second handshake: resumed %v, %v", v, second.DidResume, err)
		}
	}
}

func TestRotationWithoutRestart(t *testing.T) {
	ca, dir, ps, certs, addr := start(t)
	served := func() string {
		st, err := handshake(t, addr, "api.example", "api.example", ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(st.PeerCertificates[0].Raw)
	}
	before := served()

	// A new pair for the same name, and one more name.
	ca.IssueFiles(t, dir, "api", "api.example", "api2.example")
	testutil.Poll(t, "a handshake with the rewritten certificate", func() bool { return served() != before })
	if _, err := handshake(t, addr, "api2.example", "api2.example", ca, nil); err != nil {
		t.Fatalf("the new certificate's added name: %v", err)
	}
	current := served()

	// A broken rewrite (a key of another pair) is refused; the old pair stays.
	_, otherKey := ca.Issue(t, "other.example")
	if err := os.WriteFile(ps[1].Key, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err == nil {
		t.Fatal("Reload accepted a key that does not match its certificate")
	}
	if err := os.WriteFile(ps[1].Cert, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err == nil {
		t.Fatal("Reload accepted a certificate file that is not PEM")
	}
	os.Remove(ps[2].Cert)
	if err := certs.Reload(); err == nil {
		t.Fatal("Reload accepted a missing file")
	}
	if got := served(); got != current {
		t.Error("a broken rewrite replaced the certificate in use")
	}
	if _, err := handshake(t, addr, "x.apps.example", "x.apps.example", ca, nil); err != nil {
		t.Fatalf("the pair whose file went missing: %v", err)
	}
}

func TestNewRefusesBadPairs(t *testing.T) {
	ca := testutil.NewServerCA(t)
	dir := t.TempDir()
	c, k := ca.IssueFiles(t, dir, "a", "a.example")
	_, k2 := ca.IssueFiles(t, dir, "b", "b.example")
	for name, ps := range map[string][]Pair{
		"none":       nil,
		"no key":     {{Cert: c}},
		"mismatched": {{Cert: c, Key: k2}},
		"missing":    {{Cert: dir + "/nope.pem", Key: k}},
	} {
		if _, err := New(ps, nil); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if name == "none" && !errors.Is(err, ErrNoPair) {
			t.Errorf("none: %v, want ErrNoPair", err)
		}
	}
}
