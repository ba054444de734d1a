// Package tlsterm holds the certificates an edge terminates client TLS
// with: key pairs read from PEM files, chosen by SNI, re-read when their
// files change. It knows nothing of HTTP; the edge wraps its proxy listener
// in tls.NewListener with Config's result.
//
// It is apart from internal/pki on purpose: pki is the cluster's own mutual
// TLS (one CA, identities in URI SANs, both sides verified), while these are
// public certificates for whatever names clients ask for, with no client
// verification. The reload approach is pki.Source's (stat at most once a
// second, content compared when a file is too fresh for its stat to prove it
// unchanged, a bad new file refused and the old pair kept).
package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/internal/filewatch"
)

// ErrNoPair is returned by New without any key pair.
var ErrNoPair = errors.New("tlsterm: no certificate: give --tls-cert and --tls-key")

// Pair names the PEM files of one certificate (chain, leaf first) and its key.
type Pair struct {
	Cert, Key string
}

// reloadCheck is how often the files are looked at (stat only).
const reloadCheck = time.Second

// Certificates is the live set of key pairs. Safe for concurrent use.
type Certificates struct {
	pairs     []Pair
	log       *slog.Logger
	cur       atomic.Pointer[table]
	mu        sync.Mutex // serialises reloads
	lastCheck filewatch.Throttle
}

// table is one immutable generation of the loaded pairs and their index.
type table struct {
	loaded []*loaded                     // as the pairs are listed
	byName map[string][]*tls.Certificate // lower-case DNS name or IP (wildcards as "*.example.com")
	def    *tls.Certificate              // the first pair: no SNI, or a name no pair has
}

type loaded struct {
	cert  tls.Certificate
	files *filewatch.Snapshot // certificate, key
}

// New loads every pair once; any problem is an error naming the files. The
// first pair is the default, served to clients that send no SNI or a name
// no certificate has. log (nil: discard) reports reloads and refused files.
func New(pairs []Pair, log *slog.Logger) (*Certificates, error) {
	if len(pairs) == 0 {
		return nil, ErrNoPair
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificates{pairs: append([]Pair(nil), pairs...), log: log}
	t := &table{}
	for _, p := range pairs {
		if p.Cert == "" || p.Key == "" {
			return nil, fmt.Errorf("tlsterm: a pair needs both a certificate and a key file (got %q and %q)", p.Cert, p.Key)
		}
		l, err := load(p)
		if err != nil {
			return nil, err
		}
		t.loaded = append(t.loaded, l)
	}
	t.index()
	c.cur.Store(t)
	c.lastCheck.Mark(time.Now())
	return c, nil
}

// Config returns the server configuration to wrap a listener with: TLS 1.2
// and later, Go's default cipher suites and key exchanges, session tickets
// with Go's automatic key rotation (nothing here sets or disables them), the
// certificate chosen per handshake by GetCertificate, and ALPN offering
// only http/1.1 (the proxy speaks HTTP/1.1; see edgenode/proxy/DESIGN.md).
// Each call returns a new Config: use one per listener, so that its ticket
// keys live as long as the listener.
func (c *Certificates) Config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// GetCertificate picks the certificate for a handshake: one whose name
// (exact, then a wildcard one label up) is the client's SNI and whose key
// the client supports; otherwise the default. It looks at the files at most
// once a second first.
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.lastCheck.Due(time.Now(), reloadCheck) {
		c.reload()
	}
	t := c.cur.Load()
	if name := strings.ToLower(strings.TrimSuffix(hello.ServerName, ".")); name != "" {
		if cert := pick(hello, t.byName[name]); cert != nil {
			return cert, nil
		}
		if _, rest, ok := strings.Cut(name, "."); ok {
			if cert := pick(hello, t.byName["*."+rest]); cert != nil {
				return cert, nil
			}
		}
	}
	return t.def, nil
}

func pick(hello *tls.ClientHelloInfo, certs []*tls.Certificate) *tls.Certificate {
	for _, cert := range certs {
		if len(certs) == 1 || hello.SupportsCertificate(cert) == nil {
			return cert
		}
	}
	return nil
}

// Reload looks at the files now instead of at the next handshake's check;
// it returns the errors of pairs whose new files were refused.
func (c *Certificates) Reload() error {
	c.lastCheck.Mark(time.Now())
	return c.reload()
}

// reload re-reads the pairs whose files changed. A pair whose new files do
// not load (unreadable, not PEM, a key that does not match, a certificate
// not valid now) keeps its old certificate, and the error is logged.
func (c *Certificates) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.cur.Load()
	next := &table{loaded: append([]*loaded(nil), old.loaded...)}
	changed := false
	var errs []error
	for i, p := range c.pairs {
		prev := old.loaded[i]
		stale, err := prev.files.Stale()
		if err == nil && !stale {
			continue
		}
		var l *loaded
		if err == nil {
			l, err = load(p)
		}
		if err != nil {
			c.log.Error("TLS certificate files changed but cannot be used; keeping the certificate in use",
				"cert", p.Cert, "key", p.Key, "err", err)
			errs = append(errs, err)
			continue
		}
		if !l.files.SameContent(prev.files) {
			c.log.Info("TLS certificate reloaded", "cert", p.Cert, "names", names(l.cert.Leaf),
				"not_after", l.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		} else {
			l.cert = prev.cert // touched, not changed
		}
		next.loaded[i] = l
		changed = true
	}
	if changed {
		next.index()
		c.cur.Store(next)
	}
	return errors.Join(errs...)
}

func (t *table) index() {
	t.byName = map[string][]*tls.Certificate{}
	for _, l := range t.loaded {
		for _, n := range names(l.cert.Leaf) {
			t.byName[n] = append(t.byName[n], &l.cert)
		}
	}
	t.def = &t.loaded[0].cert
}

// names are the names a certificate answers for, lower-case: its DNS SANs
// and IP SANs (the subject's common name only when it has neither, as old
// certificates do).
func names(leaf *x509.Certificate) []string {
	var out []string
	for _, n := range leaf.DNSNames {
		out = append(out, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	for _, ip := range leaf.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 && leaf.Subject.CommonName != "" {
		out = append(out, strings.ToLower(leaf.Subject.CommonName))
	}
	return out
}

// load reads one pair and checks it: the key matches the certificate, which
// is valid now.
func load(p Pair) (*loaded, error) {
	files, err := filewatch.Read(p.Cert, p.Key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(files.Data(0), files.Data(1))
	if err != nil {
		return nil, fmt.Errorf("key pair %s, %s: %w", p.Cert, p.Key, err)
	}
	if now := time.Now(); now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("certificate %s is valid from %s to %s, not now", p.Cert,
			cert.Leaf.NotBefore.UTC().Format(time.RFC3339), cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &loaded{cert: cert, files: files}, nil
}
