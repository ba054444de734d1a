package pki

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves; it is safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }

// logBuffer collects a Source's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// replace writes a new key pair over the one f names, as
// `edgecell certs issue --force` does.
func replace(t *testing.T, f Files, certPEM, keyPEM []byte) {
	t.Helper()
	base := strings.TrimSuffix(filepath.Base(f.Cert), ".pem")
	certPath, keyPath, err := WriteKeyPair(filepath.Dir(f.Cert), base, certPEM, keyPEM, true)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != f.Cert || keyPath != f.Key {
		t.Fatalf("WriteKeyPair wrote %s and %s, not %s and %s", certPath, keyPath, f.Cert, f.Key)
	}
}

// served is the serial number of the certificate src presents to a client.
func served(t *testing.T, src, client *Source) string {
	t.Helper()
	c := talk(t, src.StrictServerConfig(RoleAdmin), client.ClientConfig(src.Identity().Role))
	if c.serverErr != nil || c.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", c.serverErr, c.clientErr)
	}
	return c.clientSaw.SerialNumber.String()
}

// rotating is a coordinator's Source over files the test replaces, and the
// serial number of the certificate it presents at first.
func (w *world) rotating(t *testing.T, log *slog.Logger) (Files, *Source, string) {
	t.Helper()
	f := writeHolder(t, w.ca, w.caDir, IssueRequest{Identity: coordinator})
	src, err := NewSource(f, log)
	if err != nil {
		t.Fatal(err)
	}
	return f, src, served(t, src, w.admin)
}

func TestNewSourceRefuses(t *testing.T) {
	now := time.Now()
	ca, caDir := testCA(t, now.Add(-48*time.Hour))
	other, _ := testCA(t, now)
	otherCert, otherKey := issue(t, other, IssueRequest{Identity: coordinator})
	_, anotherKey := issue(t, ca, IssueRequest{Identity: coordinator})
	expiredCert, expiredKey := issue(t, ca, IssueRequest{Identity: coordinator, Now: now.Add(-24 * time.Hour), Lifetime: time.Hour})
	write := func(t *testing.T, path string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		spoil func(t *testing.T, f *Files)
		want  func(f Files) string
	}{
		{"no files named", func(_ *testing.T, f *Files) { *f = Files{} },
			func(Files) string { return "TLS needs [--cacert --cert --key]; give all three" }},
		{"no key named", func(_ *testing.T, f *Files) { f.Key = "" },
			func(Files) string { return "TLS needs [--key]" }},
		{"a missing CA file", func(t *testing.T, f *Files) { f.CA = filepath.Join(t.TempDir(), "ca.pem") },
			func(f Files) string { return f.CA + ": no such file or directory" }},
		{"a missing certificate", func(t *testing.T, f *Files) { os.Remove(f.Cert) },
			func(f Files) string { return f.Cert + ": no such file or directory" }},
		{"a missing key", func(t *testing.T, f *Files) { os.Remove(f.Key) },
			func(f Files) string { return f.Key + ": no such file or directory" }},
		{"the key of another pair", func(t *testing.T, f *Files) { write(t, f.Key, anotherKey) },
			func(f Files) string {
				return "key pair " + f.Cert + ", " + f.Key + ": tls: private key does not match public key"
			}},
		{"a CA file that is not PEM", func(t *testing.T, f *Files) { write(t, f.CA, []byte("not a certificate")) },
			func(f Files) string { return "CA certificate " + f.CA + ": no PEM certificate in it" }},
		{"a pair of another CA", func(t *testing.T, f *Files) { write(t, f.Cert, otherCert); write(t, f.Key, otherKey) },
			func(f Files) string {
				return "certificate " + f.Cert + ": certificate not trusted: x509: certificate signed by unknown authority"
			}},
		{"an expired pair", func(t *testing.T, f *Files) { write(t, f.Cert, expiredCert); write(t, f.Key, expiredKey) },
			func(f Files) string {
				return "certificate " + f.Cert + ": certificate not trusted: x509: certificate has expired"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeHolder(t, ca, caDir, IssueRequest{Identity: coordinator})
			// Each case breaks a copy of the CA file, not the shared one.
			caCopy := filepath.Join(t.TempDir(), CACertFile)
			write(t, caCopy, ca.CertPEM())
			f.CA = caCopy
			tt.spoil(t, &f)
			src, err := NewSource(f, nil)
			wantErr(t, "NewSource", err, tt.want(f))
			if src != nil {
				t.Error("a refused NewSource returned a Source")
			}
		})
	}
}

func TestSourceReloadPicksUpARotatedKeyPair(t *testing.T) {
	w := newWorld(t)
	var log logBuffer
	f, src, before := w.rotating(t, log.logger())
	if err := src.Reload(); err != nil {
		t.Fatalf("Reload of unchanged files: %v", err)
	}
	if strings.Contains(log.String(), "reloaded") {
		t.Errorf("Reload of unchanged files logged a reload:\n%s", log.String())
	}

	certPEM, keyPEM := issue(t, w.ca, IssueRequest{Identity: coordinator, Lifetime: 30 * 24 * time.Hour})
	replace(t, f, certPEM, keyPEM)
	if err := src.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	leaf := parseLeaf(t, certPEM)
	if got := served(t, src, w.admin); got != leaf.SerialNumber.String() || got == before {
		t.Errorf("after the rotation the server presents serial %s, want the new %s (the old was %s)", got, leaf.SerialNumber, before)
	}
	if !src.NotAfter().Equal(leaf.NotAfter) {
		t.Errorf("NotAfter %s, want the new certificate's %s", src.NotAfter(), leaf.NotAfter)
	}
	if want := "TLS certificates reloaded\" identity=spiffe://edgecell/coordinator/c1"; !strings.Contains(log.String(), want) {
		t.Errorf("the log lacks %q:\n%s", want, log.String())
	}
}

func TestSourceNoticesARewriteWithinOneClockTick(t *testing.T) {
	// File systems stamp modification times with a coarse clock (ext4: a
	// few milliseconds), so a rotation right after the files were last read
	// can leave the same size and time on them.
	w := newWorld(t)
	f, src, before := w.rotating(t, nil)
	oldCert, err := os.ReadFile(f.Cert)
	if err != nil {
		t.Fatal(err)
	}
	var certPEM, keyPEM []byte
	for range 1000 { // ECDSA signatures vary in length; find a certificate of the same size
		if certPEM, keyPEM = issue(t, w.ca, IssueRequest{Identity: coordinator}); len(certPEM) == len(oldCert) {
			break
		}
	}
	if len(certPEM) != len(oldCert) {
		t.Fatal("no certificate of the same size")
	}
	stamps := map[string]time.Time{}
	for _, p := range []string{f.Cert, f.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		stamps[p] = fi.ModTime()
	}
	replace(t, f, certPEM, keyPEM)
	for p, mod := range stamps {
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got, want := served(t, src, w.admin), parseLeaf(t, certPEM).SerialNumber.String(); got != want {
		t.Errorf("after the rotation the server presents serial %s, want the new %s (the old was %s)", got, want, before)
	}
}

func TestSourceReloadsByItselfDuringHandshakes(t *testing.T) {
	w := newWorld(t)
	f, src, before := w.rotating(t, nil)
	var clock fakeClock
	clock.set(time.Now())
	src.now = clock.now

	certPEM, keyPEM := issue(t, w.ca, IssueRequest{Identity: coordinator})
	replace(t, f, certPEM, keyPEM)
	if got := served(t, src, w.admin); got != before {
		t.Errorf("the files were looked at again within %s of the last check (serial %s, was %s)", reloadCheck, got, before)
	}
	clock.advance(reloadCheck)
	if got, want := served(t, src, w.admin), parseLeaf(t, certPEM).SerialNumber.String(); got != want {
		t.Errorf("%s after the rotation the server presents serial %s, want the new %s", reloadCheck, got, want)
	}
}

func TestSourceRefusesAChangedIdentityAndKeepsTheOld(t *testing.T) {
	w := newWorld(t)
	var log logBuffer
	f, src, before := w.rotating(t, log.logger())

	certPEM, keyPEM := issue(t, w.ca, IssueRequest{Identity: Identity{Role: RoleCoordinator, Name: "c2"}})
	replace(t, f, certPEM, keyPEM)
	err := src.Reload()
	wantErr(t, "Reload", err, f.Cert+": the new certificate is for spiffe://edgecell/coordinator/c2, the running one for spiffe://edgecell/coordinator/c1; an identity does not change without a restart")
	if got := src.Identity(); got != coordinator {
		t.Errorf("Identity() = %s after a refused change, want %s", got, coordinator)
	}
	if got := served(t, src, w.admin); got != before {
		t.Errorf("the server presents serial %s after a refused change, want the old %s", got, before)
	}
	if want := "level=ERROR msg=\"TLS files changed but cannot be used; keeping the certificates in use\""; !strings.Contains(log.String(), want) {
		t.Errorf("the log lacks %q:\n%s", want, log.String())
	}
}

func TestSourceKeepsTheOldMaterialWhenNewFilesAreBroken(t *testing.T) {
	w := newWorld(t)
	other, _ := testCA(t, w.now)
	tests := []struct {
		name  string
		spoil func(t *testing.T, f Files)
		want  func(f Files) string
	}{
		{"a certificate that is not PEM", func(t *testing.T, f Files) { replace(t, f, []byte("garbage"), mustRead(t, f.Key)) },
			func(f Files) string { return "key pair " + f.Cert + ", " + f.Key }},
		{"a new certificate beside the old key", func(t *testing.T, f Files) {
			certPEM, _ := issue(t, w.ca, IssueRequest{Identity: coordinator})
			replace(t, f, certPEM, mustRead(t, f.Key))
		}, func(f Files) string { return "private key does not match public key" }},
		{"a pair of another CA", func(t *testing.T, f Files) {
			certPEM, keyPEM := issue(t, other, IssueRequest{Identity: coordinator})
			replace(t, f, certPEM, keyPEM)
		}, func(f Files) string { return "certificate " + f.Cert + ": certificate not trusted" }},
		{"a deleted key", func(t *testing.T, f Files) { os.Remove(f.Key) },
			func(f Files) string { return f.Key + ": no such file or directory" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, src, before := w.rotating(t, nil)
			tt.spoil(t, f)
			wantErr(t, "Reload", src.Reload(), tt.want(f))
			if got := served(t, src, w.admin); got != before {
				t.Errorf("the server presents serial %s after a failed reload, want the old %s", got, before)
			}
			// Good files again are picked up.
			certPEM, keyPEM := issue(t, w.ca, IssueRequest{Identity: coordinator})
			replace(t, f, certPEM, keyPEM)
			if err := src.Reload(); err != nil {
				t.Fatalf("Reload of repaired files: %v", err)
			}
			if got, want := served(t, src, w.admin), parseLeaf(t, certPEM).SerialNumber.String(); got != want {
				t.Errorf("after the repair the server presents serial %s, want %s", got, want)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
