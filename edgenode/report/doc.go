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
// them with one atomic add per request; a Reporter takes them, sends one
// batch for the endpoints of the current table, and gives them back when the
// batch fails so the next one carries them. A Reporter owns no routing
// state and never blocks the proxy.
package report
