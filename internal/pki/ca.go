package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Lifetimes. A CA outlives the certificates it issues by far, as with
// `consul tls` (5 years / 1 year) and cockroach (10 years / 5 years).
const (
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
	DefaultCertLifetime = 365 * 24 * time.Hour
	// backdate covers clock skew between the issuer and the verifier.
	backdate = 5 * time.Minute
)

// File names in a CA directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CA is a certificate authority that issues edgecell identities.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// ErrExists means a file the caller asked to create is already there.
var ErrExists = errors.New("already exists")

// InitCA creates a CA (ECDSA P-256, self-signed) in dir: ca.pem and
// ca-key.pem (0600). It refuses to replace an existing CA, whose loss would
// orphan every certificate it issued.
func InitCA(dir string, lifetime time.Duration, now time.Time) (*CA, error) {
	if lifetime <= 0 {
		lifetime = DefaultCALifetime
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("CA file %s %w; a new CA would orphan every certificate the old one issued (remove both files first if that is what you want)", p, ErrExists)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"edgecell"}, CommonName: "edgecell CA " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	// The key first: a CA certificate without its key is useless, a key
	// without the certificate is reported by LoadCA.
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return LoadCA(dir)
}

// LoadCA reads the CA in dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w (create one with `edgecell certs init --dir %s`)", err, dir)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CACertFile), err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	// ca.pem may be a bundle (a new CA beside the old one during a
	// rotation); the one that matches the key is the issuer.
	for _, c := range certs {
		if c.IsCA && publicKeysEqual(c.PublicKey, key.Public()) {
			return &CA{Cert: c, key: key, pem: certPEM}, nil
		}
	}
	return nil, fmt.Errorf("%s: no CA certificate in it matches %s", filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
}

// CertPEM is ca.pem as read: what nodes and clients trust.
func (ca *CA) CertPEM() []byte { return ca.pem }

// IssueRequest is what a certificate is for.
type IssueRequest struct {
	Identity Identity
	// Hosts are DNS names and IP addresses put in the certificate for
	// clients that verify host names (grpcurl). Coordinators and edges get
	// localhost, 127.0.0.1 and ::1 besides.
	Hosts    []string
	Lifetime time.Duration // 0: DefaultCertLifetime
	Now      time.Time
}

// Issue creates a key pair for an identity, signed by the CA, and returns
// the certificate and key as PEM. Coordinators and edges get a certificate
// for both server and client auth (they accept and open connections);
// admins and viewers one for client auth only.
func (ca *CA) Issue(req IssueRequest) (certPEM, keyPEM []byte, err error) {
	if err := req.Identity.Validate(); err != nil {
		return nil, nil, err
	}
	if req.Lifetime <= 0 {
		req.Lifetime = DefaultCertLifetime
	}
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	notAfter := req.Now.Add(req.Lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("a certificate valid until %s would outlive its CA (valid until %s): ask for a shorter lifetime or rotate the CA",
			notAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	id := req.Identity
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{Organization: []string{"edgecell"}, OrganizationalUnit: []string{string(id.Role)}, CommonName: id.Name},
		NotBefore:      req.Now.Add(-backdate),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:           []*url.URL{id.URI()},
		AuthorityKeyId: ca.Cert.SubjectKeyId,
		SubjectKeyId:   keyID(&key.PublicKey),
	}
	if id.Role == RoleCoordinator || id.Role == RoleEdge {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		// A new slice: appending to req.Hosts would write into the
		// caller's array.
		req.Hosts = slices.Concat(req.Hosts, []string{"localhost", "127.0.0.1", "::1"})
	}
	if err := addHosts(tmpl, req.Hosts); err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func addHosts(tmpl *x509.Certificate, hosts []string) error {
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if strings.ContainsAny(h, " /:@") {
			return fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	return nil
}

// WriteKeyPair writes <base>.pem (0644) and <base>-key.pem (0600) in dir.
// It refuses to replace existing files unless force is set; a forced write
// replaces each file atomically.
func WriteKeyPair(dir, base string, certPEM, keyPEM []byte, force bool) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem")
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return "", "", fmt.Errorf("%s %w (pass --force to replace it)", p, ErrExists)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	// The key first, so that a reader that sees the new certificate finds
	// its key (a Source retries a mismatched pair at the next check).
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// keyID is RFC 5280's method 1 in spirit: a hash of the public key (SHA-256
// truncated to 160 bits, as RFC 7093 allows).
func keyID(pub *ecdsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return out, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key in it")
	}
	var (
		k   any
		err error
	)
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := writeNew(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil { // the umask may have narrowed it
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Dir is a directory holding a CA and the key pairs it issued, laid out as
// `edgecell certs` and `edgecell dev` write it: ca.pem, ca-key.pem and
// <base>.pem, <base>-key.pem per holder.
type Dir string

// Files are the files base's holder uses.
func (d Dir) Files(base string) Files {
	return Files{
		CA:   filepath.Join(string(d), CACertFile),
		Cert: filepath.Join(string(d), base+".pem"),
		Key:  filepath.Join(string(d), base+"-key.pem"),
	}
}

// EnsureCA loads the CA in d, creating it first when d holds none.
func (d Dir) EnsureCA(now time.Time) (*CA, error) {
	if _, err := os.Stat(filepath.Join(string(d), CACertFile)); errors.Is(err, os.ErrNotExist) {
		return InitCA(string(d), 0, now)
	}
	return LoadCA(string(d))
}

// Ensure returns base's files, issuing its key pair for id first unless
// the files already hold a valid one for id from this CA (so a dev
// cluster restarted on its data dir keeps its certificates).
func (d Dir) Ensure(ca *CA, base string, id Identity, hosts []string, now time.Time) (Files, error) {
	f := d.Files(base)
	if s, err := NewSource(f, nil); err == nil && s.Identity() == id && s.NotAfter().After(now.Add(24*time.Hour)) {
		return f, nil
	}
	certPEM, keyPEM, err := ca.Issue(IssueRequest{Identity: id, Hosts: hosts, Now: now})
	if err != nil {
		return Files{}, err
	}
	if _, _, err := WriteKeyPair(string(d), base, certPEM, keyPEM, true); err != nil {
		return Files{}, err
	}
	return f, nil
}
