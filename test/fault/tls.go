//go:build fault

package fault

import (
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/edgecell/edgecell/internal/pki"
)

// The cluster under test runs with mutual TLS, as deployments do: a CA in
// <dir>/tls and a key pair per process, owned by the uid the process runs
// as (keys are 0600).

// clusterPKI issues the run's certificates.
type clusterPKI struct {
	dir pki.Dir
	ca  *pki.CA
}

func newClusterPKI(dir string) (*clusterPKI, error) {
	d := pki.Dir(filepath.Join(dir, "tls"))
	ca, err := d.EnsureCA(time.Now())
	if err != nil {
		return nil, err
	}
	// Processes of other uids read the CA certificate and their own pair.
	if err := os.Chmod(string(d), 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(d.Files("").CA, 0o644); err != nil {
		return nil, err
	}
	return &clusterPKI{dir: d, ca: ca}, nil
}

// env issues id's key pair, owned by uid (0: the harness's own), and
// returns the environment that gives a process its files.
func (p *clusterPKI) env(id pki.Identity, uid int) ([]string, error) {
	base := string(id.Role) + "-" + id.Name
	f, err := p.dir.Ensure(p.ca, base, id, nil, time.Now())
	if err != nil {
		return nil, err
	}
	if uid != 0 {
		for _, path := range []string{f.Cert, f.Key} {
			if err := os.Chown(path, uid, uid); err != nil {
				return nil, err
			}
		}
	}
	return []string{"EDGECELL_CACERT=" + f.CA, "EDGECELL_CERT=" + f.Cert, "EDGECELL_KEY=" + f.Key}, nil
}

// adminCreds are the harness's client credentials, an admin's.
func (p *clusterPKI) adminCreds() (credentials.TransportCredentials, error) {
	id := pki.Identity{Role: pki.RoleAdmin, Name: "fault-harness"}
	f, err := p.dir.Ensure(p.ca, string(id.Role)+"-"+id.Name, id, nil, time.Now())
	if err != nil {
		return nil, err
	}
	s, err := pki.NewSource(f, nil)
	if err != nil {
		return nil, err
	}
	return s.ClientCredentials(pki.RoleCoordinator), nil
}
