// Package raftstore owns hashicorp/raft for a coordinator: the raft instance,
// its bbolt log and stable stores, the file snapshot store, and the FSM that
// feeds committed commands to the state store and the watch hub.
//
// It is the only package that imports hashicorp/raft. Everything above it (the
// gRPC services, the forwarder, the watch streams) sees a narrow API: propose a
// command, read the state at a named consistency, wait for a revision, and a
// few membership operations.
//
// Revisions: a command that changes the state makes its raft index the
// state's revision. Reads return the revision they observed.
package raftstore
