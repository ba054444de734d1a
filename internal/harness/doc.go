// Package harness is the area above the product: code that assembles whole
// edgecell deployments to run, load and break them. Nothing here is part of a
// coordinator or an edge, and no product package imports it.
//
//   - devcluster runs three coordinators, an edge per region and demo
//     backends in one process (`edgecell dev`, and the cluster tests of
//     edgenode and cmd/edgecell).
//   - loadtest is `edgecell loadtest`: open-loop multi-region load, fault
//     steps and reports, against a devcluster or a running cluster.
//
// The import arrows point down: cmd/edgecell and tests import the harness;
// the harness imports coordinator/, edgenode/ and the low-level internal/
// packages; those never import the harness, coordinator/ and edgenode/ never
// import each other, and the low-level internal/ packages import only gen/
// and each other. layering_test.go checks every arrow.
//
// The process-level suites in test/fault and test/compose sit above the
// product too, imported by nothing, but they run the built binary rather
// than a library, so they stay where they are, as build-tagged tests.
//
// It lives under internal/ rather than at the top level because it is not a
// supported API for other modules: the Go toolchain keeps it to this one,
// and the whole area is one path prefix for the layering rule to name, the
// way etcd keeps its e2e framework and robustness suite under tests/, apart
// from the packages they exercise.
package harness
