// Package edgenode is the edge: it serves HTTP by reverse-proxying each
// request to a cell's endpoint chosen on an immutable routing table, keeps
// that table current by following the coordinators, and keeps the last good
// table on disk so that it starts and serves with every coordinator down.
//
// The pieces live in subpackages: route (the table and the per-endpoint
// gates), proxy (the HTTP path), watch (the coordinator stream), cache (the
// bbolt file), report (outcome batches and probes of half-open endpoints,
// sent to the coordinators). This package wires them together behind Start
// and Node.
package edgenode
