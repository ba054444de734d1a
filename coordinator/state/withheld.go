//go:build !edgecell_oldops

package state

import "google.golang.org/protobuf/reflect/protoreflect"

// withheldOps names registry entries this binary neither applies nor
// advertises: none. Building with the edgecell_oldops tag (withheld_oldops.go)
// withholds one, which gives the tests a real binary of an older op set.
func withheldOps() []protoreflect.Name { return nil }
