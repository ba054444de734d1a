// Package route owns the edge's routing table: an immutable snapshot of the
// routing state (cells, endpoints, placements, topology, coordinator members)
// precomputed for one edge region, so that the request path answers "which
// endpoint serves this routing key" with a few map lookups, no lock and no
// allocation.
//
// A *Table never changes after it is built. Applying a change yields a new
// Table that shares every part the change did not touch: placements are
// sharded into buckets by hash and only the touched buckets are copied, so a
// change costs O(touched buckets + cells), not O(placements). The owner keeps
// the current Table behind an atomic pointer; a request loads it once and
// finishes on it.
//
// The table also carries the replicated breaker statuses and health
// verdicts (so the cache persists them with the rest, and an edge starting
// without coordinators knows which endpoints were out). What must outlive a
// table lives in one Gate per endpoint id, shared by every table of a
// lineage (Apply, Replace, WithRevision) until the endpoint leaves the
// config: the breaker gate (the global state the coordinators' breaker
// publishes, plus a local trip on consecutive connection failures; see
// requestPath), the health verdict, and the outcome counters not yet
// reported. Finishing a table tells the
// gates the statuses that changed; the proxy reads them with atomic loads
// through Endpoint.Gate, with no map lookup on the request path. A cell with
// a panic threshold (Cell.Panic) tells the proxy when so few of its
// endpoints are routable that it should ignore the gates and try them all.
//
// Each Cell also carries its policies converted once, when its table is
// built (Cell.Policy, an internal/policy.Cell with defaults filled in), so
// that the gates and the proxy read typed values and nothing on the request
// path converts a proto.
package route
