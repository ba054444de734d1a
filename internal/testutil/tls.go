package testutil

import (
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/pki"
)

// PKI is a test's own cluster CA in a temporary directory, issuing real
// certificates (edgecell's tests run with mutual TLS, as deployments do).
type PKI struct {
	Dir pki.Dir
	CA  *pki.CA
}

// NewPKI creates a CA in a new temporary directory.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	d := pki.Dir(tb.TempDir())
	ca, err := d.EnsureCA(time.Now())
	if err != nil {
		tb.Fatalf("test CA: %v", err)
	}
	return &PKI{Dir: d, CA: ca}
}

// Base is the file base name Files uses for id.
func Base(id pki.Identity) string {
	if id.Region != "" {
		return string(id.Role) + "-" + id.Region + "-" + id.Name
	}
	return string(id.Role) + "-" + id.Name
}

// Files issues (once) a key pair for id and returns its files.
func (p *PKI) Files(tb testing.TB, id pki.Identity) pki.Files {
	tb.Helper()
	f, err := p.Dir.Ensure(p.CA, Base(id), id, nil, time.Now())
	if err != nil {
		tb.Fatalf("issue a certificate for %s: %v", id, err)
	}
	return f
}

// Source is Files loaded as a pki.Source.
func (p *PKI) Source(tb testing.TB, id pki.Identity) *pki.Source {
	tb.Helper()
	s, err := pki.NewSource(p.Files(tb, id), nil)
	if err != nil {
		tb.Fatalf("load the certificate for %s: %v", id, err)
	}
	return s
}

// Coordinator, Edge and Admin are Source for the usual identities.
func (p *PKI) Coordinator(tb testing.TB, name string) *pki.Source {
	tb.Helper()
	return p.Source(tb, pki.Identity{Role: pki.RoleCoordinator, Name: name})
}

// Edge is the Source of an edge.
func (p *PKI) Edge(tb testing.TB, name, region string) *pki.Source {
	tb.Helper()
	return p.Source(tb, pki.Identity{Role: pki.RoleEdge, Name: name, Region: region})
}

// Admin is the Source of an admin named "admin".
func (p *PKI) Admin(tb testing.TB) *pki.Source {
	tb.Helper()
	return p.Source(tb, pki.Identity{Role: pki.RoleAdmin, Name: "admin"})
}
