package devcluster

import (
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgecell/edgecell/internal/pki"
)

// The dev cluster runs with mutual TLS, as a deployment does: Start writes a
// CA and one key pair per node, plus an admin's and a viewer's, under
// <data dir>/tls, and keeps them across restarts on the same data dir.

// TLSDirName is the directory under the data dir holding the certificates.
const TLSDirName = "tls"

// clusterTLS is the dev cluster's certificates.
type clusterTLS struct {
	dir     pki.Dir
	ca      *pki.CA
	sources map[string]*pki.Source // by file base name
}

func (c *Cluster) setupTLS() error {
	if c.opts.Insecure {
		return nil
	}
	dir := pki.Dir(filepath.Join(c.dataDir, TLSDirName))
	now := time.Now()
	ca, err := dir.EnsureCA(now)
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	t := &clusterTLS{dir: dir, ca: ca, sources: map[string]*pki.Source{}}
	ids := map[string]pki.Identity{
		"admin":  {Role: pki.RoleAdmin, Name: "admin"},
		"viewer": {Role: pki.RoleViewer, Name: "viewer"},
	}
	for i, r := range Regions() {
		name := memberName(i)
		ids[name] = pki.Identity{Role: pki.RoleCoordinator, Name: name}
		ids[edgeName(r)] = pki.Identity{Role: pki.RoleEdge, Name: edgeName(r), Region: r}
	}
	for base, id := range ids {
		f, err := dir.Ensure(ca, base, id, nil, now)
		if err != nil {
			return fmt.Errorf("devcluster: certificate for %s: %w", id, err)
		}
		if t.sources[base], err = pki.NewSource(f, c.log); err != nil {
			return fmt.Errorf("devcluster: %w", err)
		}
	}
	c.tls = t
	return nil
}

// source is a node's TLS material, nil when the cluster runs insecure.
func (c *Cluster) source(base string) *pki.Source {
	if c.tls == nil {
		return nil
	}
	return c.tls.sources[base]
}

// TLSFiles are the files of a holder of the cluster's certificates: "admin",
// "viewer", a member ("n1") or an edge ("edge-us-east"). ok is false when the
// cluster runs insecure.
func (c *Cluster) TLSFiles(base string) (f pki.Files, ok bool) {
	if c.tls == nil {
		return pki.Files{}, false
	}
	return c.tls.dir.Files(base), true
}

// TLSDir is where the certificates are, "" when the cluster runs insecure.
func (c *Cluster) TLSDir() string {
	if c.tls == nil {
		return ""
	}
	return string(c.tls.dir)
}

// Credentials issues (once) a certificate of the cluster CA for id and
// returns client credentials presenting it, for harnesses that talk to the
// coordinators as an identity of their own (the load tool's observer is an
// edge). With the cluster insecure they are plaintext.
func (c *Cluster) Credentials(id pki.Identity) (credentials.TransportCredentials, error) {
	if c.tls == nil {
		return insecure.NewCredentials(), nil
	}
	base := string(id.Role) + "-" + id.Name
	f, err := c.tls.dir.Ensure(c.tls.ca, base, id, nil, time.Now())
	if err != nil {
		return nil, err
	}
	s, err := pki.NewSource(f, c.log)
	if err != nil {
		return nil, err
	}
	return s.ClientCredentials(pki.RoleCoordinator), nil
}

// ClientCreds are credentials for a client of the coordinators holding
// base's certificate ("admin", "viewer", ...), or plaintext.
func (c *Cluster) ClientCreds(base string) credentials.TransportCredentials {
	if s := c.source(base); s != nil {
		return s.ClientCredentials(pki.RoleCoordinator)
	}
	return insecure.NewCredentials()
}
