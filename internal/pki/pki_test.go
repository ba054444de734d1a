package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The identities the tests issue certificates for.
var (
	coordinator = Identity{Role: RoleCoordinator, Name: "c1"}
	edge        = Identity{Role: RoleEdge, Region: "us-east", Name: "e1"}
	admin       = Identity{Role: RoleAdmin, Name: "alice"}
	viewer      = Identity{Role: RoleViewer, Name: "bob"}
)

// testCA creates a CA in a directory of its own, valid from now.
func testCA(t *testing.T, now time.Time) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := InitCA(dir, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

// issue issues a key pair or fails the test.
func issue(t *testing.T, ca *CA, req IssueRequest) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		t.Fatalf("issue %s: %v", req.Identity, err)
	}
	return certPEM, keyPEM
}

// parseLeaf parses the one certificate of a PEM file.
func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	certs, err := parseCerts(certPEM)
	if err != nil || len(certs) != 1 {
		t.Fatalf("parse certificate: %d certificates, %v", len(certs), err)
	}
	return certs[0]
}

// writeHolder issues a key pair for req and writes it in a directory of its
// own; the Files trust caDir's ca.pem.
func writeHolder(t *testing.T, ca *CA, caDir string, req IssueRequest) Files {
	t.Helper()
	certPEM, keyPEM := issue(t, ca, req)
	certPath, keyPath, err := WriteKeyPair(t.TempDir(), req.Identity.Name, certPEM, keyPEM, false)
	if err != nil {
		t.Fatal(err)
	}
	return Files{CA: filepath.Join(caDir, CACertFile), Cert: certPath, Key: keyPath}
}

// newSource issues a key pair for id (valid from now) and loads it.
func newSource(t *testing.T, ca *CA, caDir string, id Identity) *Source {
	t.Helper()
	src, err := NewSource(writeHolder(t, ca, caDir, IssueRequest{Identity: id, Now: time.Now()}), nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// wantErr fails the test unless err is nil when want is "", or contains want.
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want success", what, err)
	case want != "" && err == nil:
		t.Errorf("%s succeeded, want an error containing %q", what, want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("%s: error %q lacks %q", what, err, want)
	}
}

func TestInitCARefusesToReplaceAnExistingCA(t *testing.T) {
	now := time.Now()
	for _, keep := range [][]string{{CACertFile, CAKeyFile}, {CACertFile}, {CAKeyFile}} {
		t.Run(strings.Join(keep, "+"), func(t *testing.T) {
			_, dir := testCA(t, now)
			for _, f := range []string{CACertFile, CAKeyFile} {
				if !slices.Contains(keep, f) {
					if err := os.Remove(filepath.Join(dir, f)); err != nil {
						t.Fatal(err)
					}
				}
			}
			before := readFiles(t, dir)
			_, err := InitCA(dir, 0, now)
			if !errors.Is(err, ErrExists) {
				t.Fatalf("second InitCA: %v, want ErrExists", err)
			}
			wantErr(t, "second InitCA", err, filepath.Join(dir, keep[0])+" already exists; a new CA would orphan every certificate")
			if after := readFiles(t, dir); !maps.Equal(before, after) {
				t.Errorf("a refused InitCA changed the directory: %v -> %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
			}
		})
	}
}

// readFiles is every file of dir and its contents.
func readFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestInitCAWritesAKeyOnlyItsOwnerReads(t *testing.T) {
	now := time.Now()
	ca, dir := testCA(t, now)
	for f, mode := range map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		// The umask may narrow a mode, never widen it.
		if got := fi.Mode().Perm(); got&^mode != 0 {
			t.Errorf("%s has mode %v, want at most %v", f, got, mode)
		}
	}
	if !ca.Cert.IsCA || ca.Cert.NotAfter.Before(now.Add(DefaultCALifetime-time.Minute)) {
		t.Errorf("CA certificate: IsCA %v, valid until %s", ca.Cert.IsCA, ca.Cert.NotAfter)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !bytes.Equal(loaded.CertPEM(), ca.CertPEM()) {
		t.Error("LoadCA does not return the CA InitCA created")
	}
}

func TestLoadCAExplainsAMissingCA(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadCA(dir)
	wantErr(t, "LoadCA of an empty directory", err, "edgecell certs init --dir "+dir)
}

func TestIssueByRole(t *testing.T) {
	now := time.Now()
	ca, _ := testCA(t, now)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tests := []struct {
		id       Identity
		hosts    []string
		usage    []x509.ExtKeyUsage
		dnsNames []string
		ips      []string
	}{
		{coordinator, []string{"c1.example.com", "10.0.0.7"}, both, []string{"c1.example.com", "localhost"}, []string{"10.0.0.7", "127.0.0.1", "::1"}},
		{edge, []string{"edge.example.com", " ", "edge.example.com"}, both, []string{"edge.example.com", "localhost"}, []string{"127.0.0.1", "::1"}},
		{coordinator, nil, both, []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{admin, nil, client, nil, nil},
		{viewer, nil, client, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.id.String()+" "+strings.Join(tt.hosts, ","), func(t *testing.T) {
			certPEM, keyPEM := issue(t, ca, IssueRequest{Identity: tt.id, Hosts: tt.hosts, Now: now})
			leaf := parseLeaf(t, certPEM)
			if !slices.Equal(leaf.ExtKeyUsage, tt.usage) {
				t.Errorf("extended key usage %v, want %v", leaf.ExtKeyUsage, tt.usage)
			}
			if !slices.Equal(leaf.DNSNames, tt.dnsNames) {
				t.Errorf("DNS names %q, want %q", leaf.DNSNames, tt.dnsNames)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.ips) {
				t.Errorf("IP addresses %q, want %q", ips, tt.ips)
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tt.id.String() {
				t.Errorf("URIs %v, want [%s]", leaf.URIs, tt.id)
			}
			if got, err := FromCertificate(leaf); err != nil || got != tt.id {
				t.Errorf("FromCertificate = %v, %v; want %v", got, err, tt.id)
			}
			if want := now.Add(DefaultCertLifetime).Truncate(time.Second); !leaf.NotAfter.Equal(want) {
				t.Errorf("valid until %s, want %s (the default lifetime)", leaf.NotAfter, want)
			}
			for _, u := range tt.usage {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("does not verify against the CA for %v: %v", u, err)
				}
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Errorf("the key does not go with the certificate: %v", err)
			}
		})
	}
}

func TestIssueDoesNotChangeTheCallersHosts(t *testing.T) {
	ca, _ := testCA(t, time.Now())
	hosts := make([]string, 1, 8)
	hosts[0] = "a.example.com"
	issue(t, ca, IssueRequest{Identity: coordinator, Hosts: hosts})
	if all := hosts[:cap(hosts)]; all[1] != "" {
		t.Errorf("Issue wrote past the end of the caller's Hosts: %q", all)
	}
}

func TestIssueRefuses(t *testing.T) {
	now := time.Now()
	ca, err := InitCA(t.TempDir(), 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  IssueRequest
		want string
	}{
		{"bad name", IssueRequest{Identity: Identity{Role: RoleAdmin, Name: "al ice"}}, `name "al ice" is invalid: use letters, digits`},
		{"unknown role", IssueRequest{Identity: Identity{Role: "root", Name: "x"}}, `unknown role "root": want coordinator, edge, admin or viewer`},
		{"edge without region", IssueRequest{Identity: Identity{Role: RoleEdge, Name: "e1"}}, `an edge needs a region, and "" is not one`},
		{"region on an admin", IssueRequest{Identity: Identity{Role: RoleAdmin, Name: "alice", Region: "us-east"}}, `only an edge identity has a region (the admin "alice" was given "us-east")`},
		{"host that is a URL", IssueRequest{Identity: coordinator, Hosts: []string{"https://c1"}, Lifetime: time.Hour}, `host "https://c1" is neither an IP address nor a DNS name`},
		{"outliving the CA", IssueRequest{Identity: coordinator, Lifetime: 31 * 24 * time.Hour, Now: now}, "would outlive its CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tt.req)
			wantErr(t, "Issue", err, tt.want)
			if certPEM != nil || keyPEM != nil {
				t.Error("a refused Issue returned PEM")
			}
		})
	}
}

func TestIdentityValidate(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		id   Identity
		want string
	}{
		{coordinator, ""},
		{edge, ""},
		{admin, ""},
		{viewer, ""},
		{Identity{Role: RoleEdge, Region: "eu-west-2", Name: "edge_7.b"}, ""},
		{Identity{Role: "", Name: "x"}, `unknown role ""`},
		{Identity{Role: "Admin", Name: "x"}, `unknown role "Admin"`},
		{Identity{Role: RoleAdmin, Name: ""}, `name "" is invalid`},
		{Identity{Role: RoleAdmin, Name: "-x"}, `name "-x" is invalid`},
		{Identity{Role: RoleAdmin, Name: "a/b"}, `name "a/b" is invalid`},
		{Identity{Role: RoleAdmin, Name: long}, "at most 128 characters"},
		{Identity{Role: RoleEdge, Name: "e1"}, `an edge needs a region, and "" is not one: use lowercase letters`},
		{Identity{Role: RoleEdge, Name: "e1", Region: "US-East"}, `an edge needs a region, and "US-East" is not one`},
		{Identity{Role: RoleCoordinator, Name: "c1", Region: "us-east"}, `only an edge identity has a region (the coordinator "c1" was given "us-east")`},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			wantErr(t, "Validate", tt.id.Validate(), tt.want)
		})
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		uri  string
		id   Identity
		want string
	}{
		{"spiffe://edgecell/coordinator/c1", coordinator, ""},
		{"spiffe://edgecell/edge/us-east/e1", edge, ""},
		{"spiffe://edgecell/admin/alice", admin, ""},
		{"spiffe://edgecell/viewer/bob", viewer, ""},
		{"spiffe://example.org/admin/alice", Identity{}, "want spiffe://edgecell/<role>/<name>"},
		{"https://edgecell/admin/alice", Identity{}, "want spiffe://edgecell/<role>/<name>"},
		{"spiffe://mallory@edgecell/admin/alice", Identity{}, "want spiffe://edgecell/<role>/<name>"},
		{"spiffe://edgecell/admin/alice?x=1", Identity{}, "want spiffe://edgecell/<role>/<name>"},
		{"spiffe://edgecell/edge/e1", Identity{}, "or /edge/<region>/<name> for an edge"},
		{"spiffe://edgecell/admin/us-east/alice", Identity{}, "or /edge/<region>/<name> for an edge"},
		{"spiffe://edgecell/admin/alice/", Identity{}, "or /edge/<region>/<name> for an edge"},
		{"spiffe://edgecell/edge/US/e1", Identity{}, `identity "spiffe://edgecell/edge/US/e1": an edge needs a region, and "US" is not one`},
		{"spiffe://edgecell/admin/.alice", Identity{}, `identity "spiffe://edgecell/admin/.alice": name ".alice" is invalid`},
		{"spiffe://edgecell/root/alice", Identity{}, `unknown role "root"`},
		{"spiffe://edgecell/admin/%zz", Identity{}, `identity "spiffe://edgecell/admin/%zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			id, err := ParseURI(tt.uri)
			wantErr(t, "ParseURI", err, tt.want)
			if id != tt.id {
				t.Errorf("ParseURI = %+v, want %+v", id, tt.id)
			}
			if tt.want == "" && id.String() != tt.uri {
				t.Errorf("String() = %q, want %q back", id.String(), tt.uri)
			}
		})
	}
}

// certWithURIs signs a client certificate naming uris (no other check than
// x509's), for identities Issue would never produce.
func certWithURIs(t *testing.T, ca *CA, now time.Time, uris ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func TestFromCertificate(t *testing.T) {
	now := time.Now()
	ca, _ := testCA(t, now)
	tests := []struct {
		name       string
		uris       []string
		id         Identity
		want       string
		noIdentity bool
	}{
		{"one identity", []string{"spiffe://edgecell/admin/alice"}, admin, "", false},
		{"one identity and a foreign URI", []string{"spiffe://example.org/ns/a", "spiffe://edgecell/edge/us-east/e1"}, edge, "", false},
		{"no URI", nil, Identity{}, "the certificate names no edgecell identity (no spiffe://edgecell/ URI SAN)", true},
		{"a foreign trust domain only", []string{"spiffe://example.org/admin/alice"}, Identity{}, "no spiffe://edgecell/ URI SAN", true},
		{"two identities", []string{"spiffe://edgecell/admin/alice", "spiffe://edgecell/viewer/bob"}, Identity{}, "it names 2, a certificate must name exactly one", true},
		{"an invalid identity", []string{"spiffe://edgecell/edge/e1"}, Identity{}, `identity "spiffe://edgecell/edge/e1": want`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pair := certWithURIs(t, ca, now, tt.uris...)
			id, err := FromCertificate(pair.Leaf)
			wantErr(t, "FromCertificate", err, tt.want)
			if id != tt.id {
				t.Errorf("FromCertificate = %+v, want %+v", id, tt.id)
			}
			if got := errors.Is(err, ErrNoIdentity); got != tt.noIdentity {
				t.Errorf("errors.Is(err, ErrNoIdentity) = %v, want %v", got, tt.noIdentity)
			}
		})
	}
}

func TestRoleList(t *testing.T) {
	tests := []struct {
		roles []Role
		want  string
	}{
		{nil, "no one"},
		{[]Role{RoleCoordinator}, "a coordinator"},
		{[]Role{RoleAdmin}, "an admin"},
		{[]Role{RoleEdge}, "an edge"},
		{[]Role{RoleCoordinator, RoleAdmin}, "a coordinator or an admin"},
		{[]Role{RoleCoordinator, RoleEdge, RoleViewer}, "a coordinator, an edge or a viewer"},
	}
	for _, tt := range tests {
		if got := RoleList(tt.roles...); got != tt.want {
			t.Errorf("RoleList(%v) = %q, want %q", tt.roles, got, tt.want)
		}
	}
}
