package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/internal/filewatch"
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
	lastCheck filewatch.Throttle
}

type material struct {
	cert  tls.Certificate
	leaf  *x509.Certificate
	id    Identity
	roots *x509.CertPool
	files *filewatch.Snapshot // CA, certificate, key
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
	s.lastCheck.Mark(s.now())
	return s, nil
}

// Identity is who this holder is, from its current certificate.
func (s *Source) Identity() Identity { return s.current().id }

// Files are the files the Source reads.
func (s *Source) Files() Files { return s.files }

// NotAfter is when the current certificate expires.
func (s *Source) NotAfter() time.Time { return s.current().leaf.NotAfter }

func (s *Source) current() *material {
	if s.lastCheck.Due(s.now(), reloadCheck) {
		s.maybeReload()
	}
	return s.cur.Load()
}

// Reload re-reads the files now if they changed. Handshakes do this by
// themselves; Reload is for callers that want to know at once.
func (s *Source) Reload() error {
	s.lastCheck.Mark(s.now())
	return s.maybeReload()
}

func (s *Source) maybeReload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	stale, err := old.files.Stale()
	if err != nil {
		s.log.Error("TLS files unreadable; keeping the certificates in use", "error", err)
		return err
	}
	if !stale {
		return nil
	}
	m, err := s.load()
	if err != nil {
		s.log.Error("TLS files changed but cannot be used; keeping the certificates in use", "error", err)
		return err
	}
	if m.files.SameContent(old.files) {
		// Touched or racy, not changed: keep the material, note the stamp.
		same := *old
		same.files = m.files
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

// load reads and checks the three files: the pair matches, the certificate
// chains to the CA, is valid now and names one identity.
func (s *Source) load() (*material, error) {
	files, err := filewatch.Read(s.files.CA, s.files.Cert, s.files.Key)
	if err != nil {
		return nil, err
	}
	caPEM, certPEM, keyPEM := files.Data(0), files.Data(1), files.Data(2)
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
	m := &material{cert: pair, leaf: pair.Leaf, roots: roots, files: files}
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
