// Package loadtest owns `edgecell loadtest`: an open-loop, multi-region HTTP
// load generator for edgecell edges, its scenarios and fault steps, and its
// reports.
//
// # Model
//
// Clients live in regions, each with its own rate. A region's clients send
// to their own region's edge and, when it stops answering (connection refused
// or timed out), to the next nearest edge by the routing config's latency
// matrix, the way anycast routes around a dead point of presence.
//
// The load is open-loop, as in wrk2 and vegeta: request i of a region is due
// at start + i/rate whatever happened to the earlier ones, and its latency is
// measured from that scheduled time, not from when it actually left, so a
// stalled cluster shows as latency instead of as a lower send rate
// (no coordinated omission). Requests in flight are capped per region; a
// request due while the cap is reached is not sent and counts as the error
// class "client-saturated". How late requests left compared with their
// schedule is reported as the tool's own overhead.
//
// # Request kinds
//
//   - plain: a request to a cell without authentication;
//   - signed: an HMAC-signed request (package hmacsig) to a cell with
//     AUTH_MODE_HMAC, with an API key created through the admin API;
//   - jwt: a request carrying "Authorization: Bearer <token>" to a cell with
//     AUTH_MODE_JWT; edges verify it locally against the issuer's JWKS, so
//     it needs no coordinator. A dev cluster run starts its own issuer
//     (Issuer); against a running cluster the token and key are given;
//   - replay: an earlier signed request that was accepted, re-sent byte for
//     byte to a different region's edge. It must be refused (401); an
//     accepted replay is an invariant violation.
//
// # Scenarios
//
// A Plan is a duration, per-region rates, a mix and timed fault steps. Plans
// come from the built-in scenarios (Builtin) or from a YAML file
// (ParseScenario). Steps that need control of processes (killing the leader,
// stopping backends, killing an edge) need a Target with a Controller, which
// only an in-process dev cluster provides; partitioning a region also needs
// that cluster to simulate latency (a Controller that is a Partitioner), as
// the cut is made in its simulated network; steps that go through the admin
// API (placement churn) need an admin client. Each action is one value in
// one table (faults.go), in the manner of etcd's failpoints: its name, what a
// step of it must give, what it needs of the target, and what it does.
//
// # Report
//
// Run returns a Report: per region and request kind the counts, rates,
// latency percentiles (HDR histograms), errors by class, failover gaps,
// a per-second timeline, the scenario's events, replay outcomes, config
// propagation lag, invariant checks and the tool's overhead. It is written
// as a table (WriteTable), as JSON (the Report's own field names, schema
// SchemaVersion) and as a self-contained HTML page with inline SVG charts
// (WriteHTML).
package loadtest
