//go:build edgecell_oldops

package state

import "google.golang.org/protobuf/reflect/protoreflect"

// withheldOps makes this build stand in for a binary older than rotate_key
// (Command op 25): it neither applies nor advertises it, and halts on it, as
// a binary without the op would (its messages still name the op, since its
// proto has the case). Tests only (the mixed-version cluster test in
// cmd/edgecell builds it); never ship it.
func withheldOps() []protoreflect.Name { return []protoreflect.Name{"rotate_key"} }
