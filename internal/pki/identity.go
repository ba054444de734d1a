package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/edgecell/edgecell/internal/names"
)

// Role is what a certificate's holder may do.
type Role string

// The roles. Their permissions are in coordinator/server's authorization
// table.
const (
	// RoleCoordinator is a member of the coordinator cluster.
	RoleCoordinator Role = "coordinator"
	// RoleEdge is an edge node of one region.
	RoleEdge Role = "edge"
	// RoleAdmin is an operator who may change the configuration.
	RoleAdmin Role = "admin"
	// RoleViewer is an operator who may read everything but key secrets.
	RoleViewer Role = "viewer"
)

// Roles lists every role, in the order the CLI documents them.
var Roles = []Role{RoleCoordinator, RoleEdge, RoleAdmin, RoleViewer}

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q: want coordinator, edge, admin or viewer", s)
}

// TrustDomain is the authority of every identity URI.
const TrustDomain = "edgecell"

// Identity is who holds a certificate.
type Identity struct {
	Role Role
	Name string
	// Region is set for edges only.
	Region string
}

// ErrNoIdentity means a certificate names no edgecell identity, or more
// than one.
var ErrNoIdentity = errors.New("the certificate names no edgecell identity")

// Validate checks the role, the name and (for an edge, where it is
// required) the region.
func (id Identity) Validate() error {
	if _, err := ParseRole(string(id.Role)); err != nil {
		return err
	}
	if !names.ValidID(id.Name) {
		return fmt.Errorf("name %q is invalid: %s", id.Name, names.IDRule)
	}
	switch {
	case id.Role == RoleEdge && !names.ValidRegion(id.Region):
		return fmt.Errorf("an edge needs a region, and %q is not one: %s", id.Region, names.RegionRule)
	case id.Role != RoleEdge && id.Region != "":
		return fmt.Errorf("only an edge identity has a region (the %s %q was given %q)", id.Role, id.Name, id.Region)
	}
	return nil
}

// URI is the identity's SPIFFE-style URI.
func (id Identity) URI() *url.URL {
	path := "/" + string(id.Role) + "/" + id.Name
	if id.Role == RoleEdge {
		path = "/" + string(id.Role) + "/" + id.Region + "/" + id.Name
	}
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: path}
}

// String is the URI as text.
func (id Identity) String() string { return id.URI().String() }

// ParseURI parses an identity URI.
func ParseURI(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Identity{}, fmt.Errorf("identity %q: %w", s, err)
	}
	return parseURL(u)
}

func parseURL(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host != TrustDomain || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Identity{}, fmt.Errorf("identity %q: want spiffe://%s/<role>/<name>", u.String(), TrustDomain)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	var id Identity
	switch {
	case len(parts) == 3 && parts[0] == string(RoleEdge):
		id = Identity{Role: RoleEdge, Region: parts[1], Name: parts[2]}
	case len(parts) == 2 && parts[0] != string(RoleEdge):
		id = Identity{Role: Role(parts[0]), Name: parts[1]}
	default:
		return Identity{}, fmt.Errorf("identity %q: want spiffe://%s/<role>/<name>, or /edge/<region>/<name> for an edge", u.String(), TrustDomain)
	}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("identity %q: %w", u.String(), err)
	}
	return id, nil
}

// FromCertificate returns the identity a certificate names: its one URI SAN
// in the edgecell trust domain. It does not verify the certificate.
func FromCertificate(c *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" || u.Host != TrustDomain {
			continue
		}
		id, err := parseURL(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Identity{}, fmt.Errorf("%w (no spiffe://%s/ URI SAN)", ErrNoIdentity, TrustDomain)
	default:
		return Identity{}, fmt.Errorf("%w: it names %d, a certificate must name exactly one", ErrNoIdentity, len(found))
	}
}
