// Package health owns the aggregation of active health checks into one
// replicated verdict per endpoint, and the rule deciding which edges check
// which endpoints. Its policy (thresholds, staleness, their defaults and
// validation) is internal/policy's Health; how an edge runs a check is
// internal/policy's Check.
//
// # Who checks what
//
// Each endpoint is checked by the edges of its own region, or by every edge
// when its region has none (Assign, ChecksFor). Edges report their results in
// batches, per endpoint, in the order they ran.
//
// # Aggregation
//
// State is one endpoint's health, held by the coordinators' state machine and
// changed only by Report and Tick, inside the raft apply of a command that
// carries the leader's timestamp. Like the breaker it reads no clock and has
// no randomness, so replicas agree; time never runs backwards inside a State.
//
// Per reporting edge, State counts consecutive passes and failures. The
// edge's verdict becomes Healthy after HealthyThreshold consecutive passes
// and Unhealthy after UnhealthyThreshold consecutive failures; it starts
// Unknown. The endpoint's verdict is the majority of the verdicts of the
// fresh edges (reported within StaleAfter) that have one. A tie, including
// the case of no such edge, keeps the previous verdict: an endpoint does not
// flap when two observers disagree, and keeps its verdict when its observers
// go quiet; a new endpoint stays Unknown (routable) until a majority forms.
// An edge silent for 2*StaleAfter is forgotten.
//
// Reports are assumed to come from the assigned edges; the caller filters.
package health
