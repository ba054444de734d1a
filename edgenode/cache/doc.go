// Package cache persists the edge's last good routing state in a local bbolt
// file, so an edge starts serving with every coordinator down (static
// stability).
//
// The file holds the raw state as the coordinators sent it (topology, cells,
// placements, members, breaker statuses, health verdicts), not the
// region-specific table, so an edge may be restarted in another region from
// the same file. The revision is written in
// the same transaction as the data it describes: a loaded state is always
// exactly the state at the loaded revision.
//
// Writes happen off the request path: a Persister coalesces whatever arrived
// since its last write into one transaction, writing changes incrementally
// and the whole state only after a reset.
package cache
