package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the PEM files a node or client presents and trusts.
type Files struct {
	CA   string // the cluster CA certificate (a bundle during a CA rotation)
	Cert string // this holder's certificate
	Key  string // its private key
}

// Set reports whether any file is named.
func (f Files) Set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Check reports a missing file name.
func (f Files) Check() error {
	var missing []string
	for _, x := range []struct{ flag, v string }{{"--cacert", f.CA}, {"--cert", f.Cert}, {"--key", f.Key}} {
		if x.v == "" {
			missing = append(missing, x.flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("TLS needs %v; give all three (or --insecure for plaintext, which anyone who reaches the port can use)", missing)
	}
	return nil
}

// reloadCheck is how often a Source looks at its files' modification times.
const reloadCheck = time.Second

// racyWindow is how recently a file may have been modified for its size and
// modification time not to prove it unchanged: file systems stamp times with
// a coarse clock (ext4: a few milliseconds, FAT: two seconds), so a file
// rewritten right after it was read can keep both. Such files are compared
// by content at the next check, as git does for a "racily clean" entry.
const racyWindow = 2 * time.Second

// Source is the live TLS material of one holder: its key pair and identity
// and the CA pool it trusts. It is safe for concurrent use; handshakes read
// the current material, and the files are looked at again (stat only) at
// most once a second, re-read when their size or modification time changed
// (or when they were modified too recently for that to tell).
type Source struct {
	files Files
	log   *slog.Logger
	now   func() time.Time
	cur   atomic.Pointer[material]

	mu        sync.Mutex // serialises reloads
	lastCheck atomic.Int64
}

type material struct {
	cert  tls.Certificate
	leaf  *x509.Certificate
	id    Identity
	roots *x509.CertPool
	stamp [3]fileStamp
	raw   [3]string // the files' contents, as stamp is their stat
	// racy is set when a file was modified within racyWindow of the read:
	// an equal stamp does not prove it unchanged.
	racy bool
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// NewSource loads the files once; any problem is an error naming the file.
// log (nil: discard) reports later reloads and reload failures.
func NewSource(f Files, log *slog.Logger) (*Source, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: f, log: log, now: time.Now}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	s.lastCheck.Store(s.now().UnixNano())
	return s, nil
}

// Identity is who this holder is, from its current certificate.
func (s *Source) Identity() Identity { return s.current().id }

// Files are the files the Source reads.
func (s *Source) Files() Files { return s.files }

// NotAfter is when the current certificate expires.
func (s *Source) NotAfter() time.Time { return s.current().leaf.NotAfter }

func (s *Source) current() *material {
	now := s.now().UnixNano()
	if last := s.lastCheck.Load(); now-last >= int64(reloadCheck) && s.lastCheck.CompareAndSwap(last, now) {
		s.maybeReload()
	}
	return s.cur.Load()
}

// Reload re-reads the files now if they changed. Handshakes do this by
// themselves; Reload is for callers that want to know at once.
func (s *Source) Reload() error {
	s.lastCheck.Store(s.now().UnixNano())
	return s.maybeReload()
}

func (s *Source) maybeReload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	stamp, err := s.stamps()
	if err != nil {
		s.log.Error("TLS files unreadable; keeping the certificates in use", "error", err)
		return err
	}
	if stamp == old.stamp && !old.racy {
		return nil
	}
	m, err := s.load()
	if err != nil {
		s.log.Error("TLS files changed but cannot be used; keeping the certificates in use", "error", err)
		return err
	}
	if m.raw == old.raw {
		// Touched or racy, not changed: keep the material, note the stamp.
		same := *old
		same.stamp, same.racy = m.stamp, m.racy
		s.cur.Store(&same)
		return nil
	}
	if m.id != old.id {
		err := fmt.Errorf("%s: the new certificate is for %s, the running one for %s; an identity does not change without a restart", s.files.Cert, m.id, old.id)
		s.log.Error("TLS files changed but cannot be used; keeping the certificates in use", "error", err)
		return err
	}
	s.cur.Store(m)
	s.log.Info("TLS certificates reloaded", "identity", m.id.String(), "not_after", m.leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

func (s *Source) stamps() ([3]fileStamp, error) {
	var out [3]fileStamp
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		out[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// load reads and checks the three files: the pair matches, the certificate
// chains to the CA, is valid now and names one identity.
func (s *Source) load() (*material, error) {
	// The file system's clock, not s.now: it is compared with the files'
	// modification times.
	readAt := time.Now()
	stamp, err := s.stamps()
	if err != nil {
		return nil, err
	}
	var raw [3][]byte
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		if raw[i], err = os.ReadFile(p); err != nil {
			return nil, err
		}
	}
	caPEM, certPEM, keyPEM := raw[0], raw[1], raw[2]
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", s.files.CA, err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key pair %s, %s: %w", s.files.Cert, s.files.Key, err)
	}
	m := &material{cert: pair, leaf: pair.Leaf, roots: roots, stamp: stamp, raw: [3]string{string(caPEM), string(certPEM), string(keyPEM)}}
	for _, st := range stamp {
		m.racy = m.racy || st.mod.After(readAt.Add(-racyWindow))
	}
	id, err := m.verify(pair.Certificate, s.now(), x509.ExtKeyUsageAny)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", s.files.Cert, err)
	}
	m.id = id
	return m, nil
}

// Verification errors, wrapped with the detail.
var (
	// ErrNoCertificate means the peer presented no certificate.
	ErrNoCertificate = errors.New("no client certificate: edgecell requires one from the cluster CA (--cacert, --cert, --key)")
	// ErrUntrusted means the chain does not verify against the CA, or the
	// certificate is expired, not yet valid or not meant for this use.
	ErrUntrusted = errors.New("certificate not trusted")
)

// verify checks a presented chain (leaf first, DER) against the roots at
// now, for usage, and returns the leaf's identity.
func (m *material) verify(chain [][]byte, now time.Time, usage x509.ExtKeyUsage) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, ErrNoCertificate
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
		}
		certs[i] = c
	}
	return m.verifyParsed(certs, now, usage)
}

func (m *material) verifyParsed(certs []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) (Identity, error) {
	if len(certs) == 0 {
		return Identity{}, ErrNoCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: m.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}
	if _, err := certs[0].Verify(opts); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	id, err := FromCertificate(certs[0])
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return id, nil
}

// Verify checks a peer's chain (as tls.ConnectionState.PeerCertificates
// holds it) against the current CA pool and returns its identity. usage is
// x509.ExtKeyUsageClientAuth for a connecting client, ServerAuth for a
// server.
func (s *Source) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	return s.current().verifyParsed(chain, s.now(), usage)
}
