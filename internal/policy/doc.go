// Package policy is the one place that knows a cell's policies as
// operators write them: the breaker, health-check and auth policies of a
// pb.Cell and its panic threshold, in their wire form (durations in
// milliseconds or seconds, zero meaning "default"). It converts them into
// typed values (Breaker, Health, Check, Auth, and Cell for all of a cell's),
// fills in their defaults, and validates them, naming the proto fields the
// operator wrote ("breaker.window_ms").
//
// One package rather than one per domain, because every side reads the same
// policies: the coordinators validate a cell's policies and run breakers and
// health aggregation under them (internal/breaker and internal/health take
// the typed values and never see a proto), and edges build one Cell per cell
// of a routing table (edgenode/route) for their gates, health checks and
// authentication. Keeping wire form, defaults and validation together means
// a default or a bound is written once, a validation error names the field
// as the proto spells it with no translation table, and the two sides can
// never read a policy differently. This package imports only gen/ and the
// standard library, so that the state machines can depend on it.
//
// Conversion never fails: BreakerOf, HealthOf and the like keep zero fields
// zero, WithDefaults fills them (and replaces invalid values, so that a raft
// apply, which must not fail, always gets a working policy), and Validate is
// for the coordinators' config checks, before anything is proposed.
package policy
