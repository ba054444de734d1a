// Package raftstore owns hashicorp/raft for a coordinator: the raft instance,
// its bbolt log and stable stores, the file snapshot store, and the FSM that
// feeds committed commands to the state machine and their changes to the
// publisher.
//
// It owns raft and nothing else (rqlite's store): Open(cfg, applier,
// publisher) receives the state machine (an Applier: apply a command at an
// index and return its result and change, freeze, restore; state.Store in a
// coordinator) and the Publisher of changes and resets (watch.Hub), which
// the caller builds and owns (Consul's FSM Deps). Open's steps are in
// store.go: check the config and data dir, open the disk, build the FSM,
// listen, bootstrap, start raft.
//
// It is the only package that imports hashicorp/raft. Everything above it (the
// gRPC services, the forwarder) sees a narrow API: propose a command, read
// one immutable view of the state at a named consistency (Read, View), wait
// for a revision, and a few membership operations; the services declare
// their own interfaces for them (coordinator/server).
//
// Revisions: a command that changes the state makes its raft index the
// state's revision. Reads return the revision they observed.
//
// Cluster identity: the member keeps the replicated cluster id in
// <data-dir>/cluster-id (cluster.go), feeds it to the watch hub, and sends it
// in the handshake that opens every raft connection (stream.go); a peer of
// another cluster is refused before raft decodes anything it sent.
//
// Versions (versions.go; the rules are in the state package doc): Propose
// logs an op only when every member of the configuration advertises it or
// it is ignorable, and a member whose state machine halted on an op its
// binary cannot apply stops advancing its applied index, takes no
// snapshots, restores none, proposes nothing and hands leadership away.
package raftstore
