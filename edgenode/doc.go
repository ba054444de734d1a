// Package edgenode is the edge: it serves HTTP by reverse-proxying each
// request to a cell's endpoint chosen on an immutable routing table, keeps
// that table current by following the coordinators, and keeps the last good
// table on disk so that it starts and serves with every coordinator down.
//
// The pieces live in subpackages: route (the table, the per-endpoint gates
// and the API keys), proxy (the HTTP path, authentication included), watch
// (the coordinator stream), cache (the bbolt file), report (outcome
// batches, probes of half-open endpoints and active health checks, sent to
// the coordinators), nonce (batched, fail-closed nonce check-and-store at
// the coordinators), jwtauth (bearer tokens against cached JWKS) and
// coordconn (the one pool of coordinator connections that watch, report
// and nonce share, with the one rule for which coordinator a call goes
// to). This package wires them together behind Start and Node.
package edgenode
