package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/pki"
)

// certsInit runs `certs init` in a new directory and returns it.
func certsInit(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	r := cli(t, "", "", "certs", "init", "--dir", dir)
	if r.code != 0 {
		t.Fatalf("certs init: %+v", r)
	}
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
		if want := "wrote " + filepath.Join(dir, f) + " ("; !strings.Contains(r.out, want) {
			t.Errorf("certs init output lacks %q:\n%s", want, r.out)
		}
	}
	return dir
}

// wantMode fails the test unless path's permissions are at most mode (the
// umask may narrow them).
func wantMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got&^mode != 0 {
		t.Errorf("%s has mode %v, want at most %v", path, got, mode)
	}
}

func TestCertsInitThenIssueEachRole(t *testing.T) {
	dir := certsInit(t)
	wantMode(t, filepath.Join(dir, pki.CAKeyFile), 0o600)
	tests := []struct {
		args  []string
		base  string
		id    pki.Identity
		days  int
		hosts string // the "hosts:" line; "" for none
	}{
		{[]string{"--role", "coordinator", "--name", "c1", "--host", "c1.internal", "--host", "10.0.0.7"}, "c1",
			pki.Identity{Role: pki.RoleCoordinator, Name: "c1"}, 365, "hosts: c1.internal, localhost, 10.0.0.7, 127.0.0.1, ::1\n"},
		{[]string{"--role", "edge", "--region", "us-east", "--name", "e1", "--days", "90"}, "e1",
			pki.Identity{Role: pki.RoleEdge, Region: "us-east", Name: "e1"}, 90, "hosts: localhost, 127.0.0.1, ::1\n"},
		{[]string{"--role", "admin", "--name", "alice", "--out", "alice-2026"}, "alice-2026",
			pki.Identity{Role: pki.RoleAdmin, Name: "alice"}, 365, ""},
		{[]string{"--role", "viewer", "--name", "bob"}, "bob",
			pki.Identity{Role: pki.RoleViewer, Name: "bob"}, 365, ""},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			start := time.Now()
			r := cli(t, "", "", append([]string{"certs", "issue", "--dir", dir}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("certs issue: %+v", r)
			}
			files := pki.Files{
				CA:   filepath.Join(dir, pki.CACertFile),
				Cert: filepath.Join(dir, tt.base+".pem"),
				Key:  filepath.Join(dir, tt.base+"-key.pem"),
			}
			for _, want := range []string{
				"issued " + tt.id.String() + ", valid until ",
				"wrote " + files.Cert + " (the certificate)\n",
				"wrote " + files.Key + " (its private key, mode 0600)\n",
				"use: --cacert " + files.CA + " --cert " + files.Cert + " --key " + files.Key + "\n",
			} {
				if !strings.Contains(r.out, want) {
					t.Errorf("output lacks %q:\n%s", want, r.out)
				}
			}
			if got := strings.Contains(r.out, "hosts: "); got != (tt.hosts != "") || !strings.Contains(r.out, tt.hosts) {
				t.Errorf("output should have %q:\n%s", tt.hosts, r.out)
			}
			wantMode(t, files.Key, 0o600)
			wantMode(t, files.Cert, 0o644)

			src, err := pki.NewSource(files, nil)
			if err != nil {
				t.Fatalf("the issued files do not load: %v", err)
			}
			if got := src.Identity(); got != tt.id {
				t.Errorf("the certificate is for %s, want %s", got, tt.id)
			}
			lifetime := time.Duration(tt.days) * 24 * time.Hour
			if na := src.NotAfter(); na.Before(start.Add(lifetime).Add(-time.Second)) || na.After(time.Now().Add(lifetime)) {
				t.Errorf("valid until %s, want %d days from now", na, tt.days)
			}
			if want := src.NotAfter().UTC().Format(time.RFC3339); !strings.Contains(r.out, "valid until "+want+"\n") {
				t.Errorf("output does not say valid until %s:\n%s", want, r.out)
			}
		})
	}
}

func TestCertsIssueReplacesFilesOnlyWithForce(t *testing.T) {
	dir := certsInit(t)
	args := []string{"certs", "issue", "--dir", dir, "--role", "admin", "--name", "alice"}
	if r := cli(t, "", "", args...); r.code != 0 {
		t.Fatalf("first issue: %+v", r)
	}
	cert := filepath.Join(dir, "alice.pem")
	first := readFile(t, cert)

	r := cli(t, "", "", args...)
	if r.code != 1 || r.out != "" {
		t.Errorf("second issue: exit %d, stdout %q; want 1 and nothing", r.code, r.out)
	}
	if want := "edgecell: " + cert + " already exists (pass --force to replace it)\n"; r.err != want {
		t.Errorf("stderr %q, want %q", r.err, want)
	}
	if !bytes.Equal(readFile(t, cert), first) {
		t.Error("a refused issue changed the certificate")
	}

	if r := cli(t, "", "", append(args, "--force")...); r.code != 0 {
		t.Fatalf("issue --force: %+v", r)
	}
	if bytes.Equal(readFile(t, cert), first) {
		t.Error("issue --force left the old certificate")
	}
	if _, err := pki.NewSource(pki.Files{CA: filepath.Join(dir, pki.CACertFile), Cert: cert, Key: filepath.Join(dir, "alice-key.pem")}, nil); err != nil {
		t.Errorf("the replaced pair does not load: %v", err)
	}
}

func TestCertsInitRefusesAnExistingCA(t *testing.T) {
	dir := certsInit(t)
	ca := readFile(t, filepath.Join(dir, pki.CACertFile))
	r := cli(t, "", "", "certs", "init", "--dir", dir)
	if r.code != 1 || !strings.Contains(r.err, filepath.Join(dir, pki.CACertFile)+" already exists; a new CA would orphan every certificate") {
		t.Errorf("second init: %+v", r)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, pki.CACertFile)), ca) {
		t.Error("a refused init changed ca.pem")
	}
}

func TestCertsIssueWithoutACA(t *testing.T) {
	dir := t.TempDir()
	r := cli(t, "", "", "certs", "issue", "--dir", dir, "--role", "admin", "--name", "alice")
	if r.code != 1 || !strings.Contains(r.err, "(create one with `edgecell certs init --dir "+dir+"`)") {
		t.Errorf("issue without a CA: %+v", r)
	}
}

func TestCertsUsageErrors(t *testing.T) {
	dir := certsInit(t)
	issue := []string{"certs", "issue", "--dir", dir}
	tests := []struct {
		args []string
		want string
	}{
		{append(issue, "--role", "root", "--name", "x"), `--role: unknown role "root": want coordinator, edge, admin or viewer`},
		{append(issue, "--role", "admin", "--name", "al ice"), `name "al ice" is invalid: use letters, digits`},
		{append(issue, "--role", "admin", "--name", "-x"), `name "-x" is invalid`},
		{append(issue, "--role", "edge", "--name", "e1"), "an edge certificate needs --region"},
		{append(issue, "--role", "edge", "--name", "e1", "--region", "US East"), `an edge needs a region, and "US East" is not one: use lowercase letters`},
		{append(issue, "--role", "admin", "--name", "alice", "--region", "us-east"), `only an edge identity has a region (the admin "alice" was given "us-east")`},
		{append(issue, "--role", "viewer", "--name", "bob", "--host", "bob.example.com"), "--host is for coordinators and edges, which serve; a viewer certificate is for connecting only"},
		{append(issue, "--role", "admin", "--name", "ca"), "ca.pem and ca-key.pem would write over the CA's own files; choose another --out"},
		{append(issue, "--role", "admin", "--name", "alice", "--out", "../alice"), `--out "../alice": want a file name without a directory`},
		{append(issue, "--role", "admin", "--name", "alice", "--days", "0"), "--days 0: want 1 to 36500"},
		{append(issue, "--role", "admin"), `required flag(s) "name" not set`},
		{[]string{"certs", "issue", "--role", "admin", "--name", "alice"}, `required flag(s) "dir" not set`},
		{[]string{"certs", "init"}, `required flag(s) "dir" not set`},
		{[]string{"certs", "init", "--dir", dir, "--days", "-1"}, "--days -1: want 1 to 36500"},
		{[]string{"certs", "renew"}, `unknown command "renew" for "edgecell certs"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[2:], " "), func(t *testing.T) {
			r := cli(t, "", "", tt.args...)
			if r.code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", r.code, r.err)
			}
			if !strings.HasPrefix(r.err, "edgecell: ") || !strings.Contains(r.err, tt.want) {
				t.Errorf("stderr %q lacks %q", r.err, tt.want)
			}
		})
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{pki.CAKeyFile, pki.CACertFile}; !slices.Equal(names, want) {
		t.Errorf("usage errors wrote files: %s holds %q, want %q", dir, names, want)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bootstrap creates the CA and each missing pair once; run again it keeps
// every file as it was.
func TestCertsBootstrapIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	args := []string{"certs", "bootstrap", "--dir", dir, "coordinator/n1=n1,10.1.2.3", "edge/us-east/edge-use1", "admin/alice"}
	first := cli(t, "", "", args...)
	if first.code != 0 {
		t.Fatalf("certs bootstrap: %+v", first)
	}
	wantIDs := map[string]pki.Identity{
		"n1":        {Role: pki.RoleCoordinator, Name: "n1"},
		"edge-use1": {Role: pki.RoleEdge, Name: "edge-use1", Region: "us-east"},
		"alice":     {Role: pki.RoleAdmin, Name: "alice"},
	}
	before := map[string][]byte{}
	for base, id := range wantIDs {
		f := pki.Dir(dir).Files(base)
		s, err := pki.NewSource(f, nil)
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if s.Identity() != id {
			t.Errorf("%s holds %s, want %s", base, s.Identity(), id)
		}
		wantMode(t, f.Key, 0o600)
		before[f.Cert] = readFile(t, f.Cert)
	}
	before[filepath.Join(dir, pki.CACertFile)] = readFile(t, filepath.Join(dir, pki.CACertFile))
	if again := cli(t, "", "", args...); again.code != 0 {
		t.Fatalf("second certs bootstrap: %+v", again)
	}
	for path, b := range before {
		if !bytes.Equal(readFile(t, path), b) {
			t.Errorf("the second run rewrote %s", path)
		}
	}
	for _, tc := range []struct{ spec, want string }{
		{"edge/edge-use1", `want role/name, or edge/region/name`},
		{"admin/alice=alice.example", "hosts are for coordinators and edges"},
		{"wizard/merlin", `unknown role "wizard"`},
	} {
		r := cli(t, "", "", "certs", "bootstrap", "--dir", dir, tc.spec)
		if r.code != 2 || !strings.Contains(r.err, tc.want) {
			t.Errorf("bootstrap %s: %+v; want exit 2 naming %q", tc.spec, r, tc.want)
		}
	}
}
