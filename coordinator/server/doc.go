// Package server implements a coordinator's gRPC services: the operator API
// (AdminService), the edge protocol (EdgeService: watch and acks) and the
// member-to-member API (ClusterService), plus the thin layer that forwards
// writes and leader reads from a follower to the leader.
//
// It depends on raft only through the Raft interface below, which
// coordinator/raftstore satisfies.
package server
