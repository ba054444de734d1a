// Package server implements a coordinator's gRPC services: the operator API
// (AdminService), the edge protocol (EdgeService: watch and acks) and the
// member-to-member API (ClusterService), plus the thin layer that forwards
// writes and leader reads from a follower to the leader.
//
// It sees the member only through four small interfaces of its own, passed
// in Deps (server.go): a Proposer (commit a command), a Reader (one
// immutable state.View at a consistency level), a Membership (the raft
// group, leadership, halts) and Watches (edge watch streams). A coordinator
// passes its raftstore.Store for the first three and its watch.Hub for the
// last; the unit tests pass fakes of what a handler calls.
//
// Every handler answers from one view: a read takes one View from the
// Reader and builds its whole answer, revision included, from it, so an
// answer never mixes two revisions or, across a snapshot restore, two
// states.
package server
