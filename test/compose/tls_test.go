//go:build compose

package compose

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/edgecell/edgecell/internal/pki"
)

// clientPKI is the deployment's CA, copied out of its tls volume, issuing
// the test's client certificates: the deployment runs with mutual TLS and
// the test is one more client of it.
type clientPKI struct {
	dir pki.Dir
	ca  *pki.CA
}

// copyPKI copies ca.pem and ca-key.pem from the certs job's container
// (stopped: docker cp reads its volumes all the same).
func copyPKI(t *testing.T, container string) *clientPKI {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
		if out, err := exec.Command("docker", "cp", container+":/tls/"+f, filepath.Join(dir, f)).CombinedOutput(); err != nil {
			t.Fatalf("docker cp %s: %v\n%s", f, err, out)
		}
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &clientPKI{dir: pki.Dir(dir), ca: ca}
}

func (p *clientPKI) creds(t *testing.T, id pki.Identity) credentials.TransportCredentials {
	t.Helper()
	f, err := p.dir.Ensure(p.ca, string(id.Role)+"-"+id.Name, id, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := pki.NewSource(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.ClientCredentials(pki.RoleCoordinator)
}
