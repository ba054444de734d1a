// Package breaker is the coordinators' replicated circuit breaker for one
// endpoint (Breaker). Its policy (thresholds, ejections, their defaults and
// validation) is internal/policy's Breaker; the edge's request-path gate,
// which follows the state this breaker publishes and adds a local trip, is
// edgenode/route's Gate.
//
// Breaker is a deterministic state machine (closed, open, half-open) with no
// clock, randomness, I/O or pointers: every method takes the time as an
// argument, and the coordinators pass the leader's timestamp carried by the
// raft command being applied. Applying the same calls with the same times to
// two copies gives two equal values (Breaker is comparable with ==), so every
// coordinator holds the same breaker at the same revision. A Breaker is a
// value: assigning it copies it entirely, so a copy-on-write store can keep
// the old version while the next one is built.
//
// Who calls what, all inside the raft apply of one command:
//
//   - Observe: an edge's batch of proxy outcomes for the endpoint.
//   - Tick: the leader's ticker, when Deadline has passed (ejection ended,
//     a trip to forget).
//   - GrantProbe: an edge asking to probe a half-open endpoint; the result
//     goes back to that edge.
//   - ProbeResult: the lease holder's probe outcome.
//   - Reset: an operator (`edgecell breaker reset`).
//
// Time never runs backwards inside a Breaker: a time earlier than one it has
// already seen (a new leader whose clock lags) is treated as that time.
//
// # Rules
//
// Closed -> open when, among outcomes reported while closed, either
// ConsecutiveFailures failures arrive with no success between them, or the
// failure rate over Window reaches FailureRateThreshold with at least
// MinRequests requests. Failures are connect errors, timeouts and 5xx.
// Batches lose the order of their outcomes, so a batch holding any success
// ends the run of consecutive failures (its own failures still count towards
// the rate); runs span batches and edges. The window is WindowBuckets fixed
// buckets of Window/WindowBuckets keyed by the time, so it depends only on
// the inputs.
//
// An open breaker ejects the endpoint for BaseEjection * trips, capped at
// MaxEjection, where trips counts the trips not yet forgotten: it grows by one
// at each trip (closed -> open or half-open -> open) and shrinks by one for
// every TripDecay the breaker then stays closed, so an endpoint that trips
// again soon after recovering stays out longer, like Envoy's ejection
// multiplier. Outcomes reported while open or half-open are ignored: they
// describe requests sent before the trip.
//
// Open -> half-open on the first Tick at or after the ejection's end.
// Half-open grants a probe lease to one edge at a time; a lease lasts
// ProbeLease, after which another edge may take it. Only the holder's
// ProbeResult counts (also after the lease expired, as long as no other edge
// took it): success closes the breaker, failure reopens it with the next,
// longer ejection. Reset closes the breaker and forgets all trips.
//
// # The ejection cap
//
// A cell's MaxEjectionPercent (Envoy's max_ejection_percent, default 50)
// bounds how many of its endpoints open breakers keep out at once, so that
// failure reports, true or forged, cannot take a whole cell out (unless it is
// 100). A Breaker
// sees one endpoint only, so the caller that holds the cell counts and
// passes a Room to ObserveCapped:
//
//   - Out means open or half-open: a half-open endpoint takes no requests
//     (only the probe holder probes it). Envoy has no half-open state; its
//     ejected hosts are the ones open here.
//   - A trip is allowed while the endpoints out, plus this one, are at most
//     MaxEjectionPercent of the cell's endpoints: policy.Breaker.MaxEjected,
//     rounded down and with no exception for the first one (Envoy ejects one
//     host whatever the percentage, which would take a cell of one endpoint
//     out).
//   - Only closed -> open is capped: half-open -> open keeps the count, and
//     the cap never closes an open breaker, also when the config lowers it.
//   - A refused breaker stays closed and keeps its counts: once another
//     endpoint of the cell is back in, the next outcomes that still meet a
//     threshold (the run or the rate) open it. The first refusal records a
//     reason and Status.TripRefused; later ones change nothing.
//
// Every transition records an operator-readable reason, for example
// "opened: 5 consecutive connect errors, last from edge-eu-1; ejected for 5s
// (trip 1)" or "half-open: ejection of 10s ended".
package breaker
