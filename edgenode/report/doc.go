// Package report tells the coordinators what this edge learns about
// endpoints, always off the request path: the proxy's outcome counts
// (ReportOutcomes, about once a second), probes of half-open endpoints
// (AcquireProbe, one HTTP probe, ReportProbe), and active health checks
// (Checker: the endpoints CheckAssignment and internal/health.ChecksFor give
// this edge, results sent with ReportHealth about once a second).
//
// Probes carry User-Agent "edgecell-probe/<edge>", health checks
// "edgecell-check/<edge>"; neither reuses connections.
//
// The counts live in each endpoint's route.Gate, where the proxy adds to
// them with one atomic add per request; a Reporter takes them and sends one
// batch for the endpoints of the current table. A Reporter owns no routing
// state and never blocks the proxy.
//
// Every RPC is a Followed call on the edge's coordinator pool
// (edgenode/coordconn): it goes to the member the watch streams from while
// that one answers, and the call after a failure goes to another member.
//
// Reports are idempotent. Each batch (outcomes, health results) carries a
// random batch id, and the coordinators count a batch id once per edge. A
// batch whose outcome is unknown (a timeout, UNAVAILABLE during an
// election: it may have committed) is resent as it is, same id, before
// anything newer, for up to MaxHold; what the edge observes meanwhile waits
// for a later batch, so a count is never in two batches. Only a batch the
// coordinators refused (it counted nothing) gives its content back to be
// merged into the next one. A held batch may be resent to another member
// than the first: the batch id makes that safe too.
package report
