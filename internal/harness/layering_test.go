package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// layer is where a package of this module sits; imports point down.
type layer int

const (
	layerOther       layer = iota // top-level product pieces such as hmacsig, deploy/bench
	layerGen                      // gen/: generated code, below everything
	layerInternal                 // internal/ outside the harness: pieces below both services
	layerCoordinator              // coordinator/
	layerEdge                     // edgenode/
	layerHarness                  // internal/harness/: above the product
	layerCmd                      // cmd/: the binary
	layerSuite                    // test/: process-level suites, imported by nothing
)

// listedPackage is what `go list -json` says of a package of this module.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string // what its non-test code imports, transitively
}

// rule binds the packages of some layers to import only from others.
type rule struct {
	// name is what a violation says.
	name string
	// subject is the layers the rule binds.
	subject func(layer) bool
	// allowed is the layers a bound package may import.
	allowed func(layer) bool
	// tests binds the imports of its tests too (directly: tests may reach
	// what they need through the harness).
	tests bool
}

// rules are the layering of the package comment, one rule per arrow.
func rules() []rule {
	is := func(ls ...layer) func(layer) bool { return func(l layer) bool { return slices.Contains(ls, l) } }
	not := func(ls ...layer) func(layer) bool { return func(l layer) bool { return !slices.Contains(ls, l) } }
	return []rule{
		{"a low-level internal/ package imports only gen/ and other low-level internal/ packages",
			is(layerInternal), is(layerGen, layerInternal), true},
		{"coordinator/ never imports edgenode/", is(layerCoordinator), not(layerEdge), true},
		{"edgenode/ never imports coordinator/", is(layerEdge), not(layerCoordinator), true},
		{"only cmd/ and tests import the harness (internal/harness)",
			not(layerCmd, layerSuite, layerHarness), not(layerHarness), false},
		{"nothing imports the suites under test/", not(layerSuite), not(layerSuite), true},
	}
}

// TestLayering enforces the layering: every import arrow points down. The
// low-level internal/ packages (all but internal/harness) import from this
// module only gen/ and each other, tests included; no package outside cmd/,
// test/ and the harness imports the harness, except from its tests;
// coordinator/ and edgenode/ never import each other (their tests may meet
// through the harness); nothing imports the suites under test/.
//
// It reads the imports with `go list`, so it needs only the sources: a
// package that does not compile still lists its imports.
func TestLayering(t *testing.T) {
	module, pkgs := listModule(t)
	rel := func(path string) (string, bool) {
		if path == module {
			return "", true
		}
		return strings.CutPrefix(path, module+"/")
	}
	layerOf := func(path string) layer {
		r, _ := rel(path)
		under := func(dir string) bool { return r == dir || strings.HasPrefix(r, dir+"/") }
		switch {
		case under("gen"):
			return layerGen
		case under("internal/harness"):
			return layerHarness
		case under("internal"):
			return layerInternal
		case under("coordinator"):
			return layerCoordinator
		case under("edgenode"):
			return layerEdge
		case under("cmd"):
			return layerCmd
		case under("test"):
			return layerSuite
		}
		return layerOther
	}
	deps := map[string][]string{}
	for _, p := range pkgs {
		deps[p.ImportPath] = p.Deps
	}
	var violations []string
	refuse := func(ru rule, how string, paths ...string) {
		args := []any{}
		for _, path := range paths {
			r, _ := rel(path)
			args = append(args, r)
		}
		violations = append(violations, fmt.Sprintf(how, args...)+": "+ru.name)
	}
	for _, p := range pkgs {
		for _, ru := range rules() {
			if !ru.subject(layerOf(p.ImportPath)) {
				continue
			}
			for _, imp := range p.Imports {
				if _, in := rel(imp); !in {
					continue
				}
				if !ru.allowed(layerOf(imp)) {
					refuse(ru, "%s imports %s", p.ImportPath, imp)
					continue
				}
				if ru.subject(layerOf(imp)) {
					continue // imp answers for its own imports
				}
				for _, dep := range deps[imp] {
					if _, in := rel(dep); in && !ru.allowed(layerOf(dep)) {
						refuse(ru, "%s imports %s, which depends on %s", p.ImportPath, imp, dep)
						break
					}
				}
			}
			if !ru.tests {
				continue
			}
			for _, imp := range slices.Concat(p.TestImports, p.XTestImports) {
				if _, in := rel(imp); in && imp != p.ImportPath && !ru.allowed(layerOf(imp)) {
					refuse(ru, "%s's tests import %s", p.ImportPath, imp)
				}
			}
		}
	}
	slices.Sort(violations)
	for _, v := range slices.Compact(violations) {
		t.Error(v)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no package in the module")
	}
}

// listModule lists every package of the module, the build-tagged suites
// under test/ included.
func listModule(t *testing.T) (module string, pkgs []listedPackage) {
	t.Helper()
	root := goCmd(t, "", "list", "-m", "-f", "{{.Path}} {{.Dir}}")
	module, dir, ok := strings.Cut(strings.TrimSpace(string(root)), " ")
	if !ok {
		t.Fatalf("go list -m: %q", root)
	}
	out := goCmd(t, dir, "list", "-e", "-tags", "fault,compose",
		"-json=ImportPath,Imports,TestImports,XTestImports,Deps", "./...")
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list -json: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return module, pkgs
}

// goCmd runs the go command in dir ("": here) and returns its output.
func goCmd(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to list imports")
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}
