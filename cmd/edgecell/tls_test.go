package main

import (
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/pki"
)

// The tests run every process and CLI call with mutual TLS, as a deployment
// does, with certificates from one CA per test binary: processes take them
// from $EDGECELL_CACERT, $EDGECELL_CERT and $EDGECELL_KEY, chosen from
// their command line (a coordinator's or edge's own, an admin's for the
// CLI).

var testCA struct {
	once sync.Once
	mu   sync.Mutex // serialises issuing
	dir  pki.Dir
	ca   *pki.CA
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testCA.dir != "" {
		os.RemoveAll(string(testCA.dir))
	}
	os.Exit(code)
}

// testFiles issues (once) a certificate of the test CA for id.
func testFiles(tb testing.TB, id pki.Identity) pki.Files {
	tb.Helper()
	f, err := issueTestFiles(id)
	if err != nil {
		tb.Fatalf("test certificate for %s: %v", id, err)
	}
	return f
}

func issueTestFiles(id pki.Identity) (pki.Files, error) {
	testCA.once.Do(func() {
		dir, err := os.MkdirTemp("", "edgecell-test-ca-")
		if err != nil {
			testCA.err = err
			return
		}
		testCA.dir = pki.Dir(dir)
		testCA.ca, testCA.err = testCA.dir.EnsureCA(time.Now())
	})
	if testCA.err != nil {
		return pki.Files{}, testCA.err
	}
	testCA.mu.Lock()
	defer testCA.mu.Unlock()
	base := string(id.Role) + "-" + id.Name
	if id.Region != "" {
		base = string(id.Role) + "-" + id.Region + "-" + id.Name
	}
	return testCA.dir.Ensure(testCA.ca, base, id, nil, time.Now())
}

var testAdmin = pki.Identity{Role: pki.RoleAdmin, Name: "admin"}

// testSource loads testFiles(id).
func testSource(tb testing.TB, id pki.Identity) *pki.Source {
	tb.Helper()
	s, err := pki.NewSource(testFiles(tb, id), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// tlsEnv is the environment giving a process f's files.
func tlsEnv(f pki.Files) []string {
	return []string{caCertEnv + "=" + f.CA, certEnv + "=" + f.Cert, keyEnv + "=" + f.Key}
}

// identityFor is who a command line runs as: a coordinator or an edge
// itself (its --name and --region), anything else as the admin.
func identityFor(args []string) pki.Identity {
	flag := func(name string) string {
		if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	switch {
	case slices.Contains(args, "coordinator"):
		return pki.Identity{Role: pki.RoleCoordinator, Name: flag("--name")}
	case slices.Contains(args, "edge"):
		return pki.Identity{Role: pki.RoleEdge, Name: flag("--name"), Region: flag("--region")}
	}
	return testAdmin
}

// processEnv is the environment of a child process running args.
func processEnv(tb testing.TB, args []string) []string {
	tb.Helper()
	if slices.Contains(args, "--insecure") {
		return os.Environ()
	}
	return append(os.Environ(), tlsEnv(testFiles(tb, identityFor(args)))...)
}
