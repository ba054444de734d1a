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
//
// # Damaged files
//
// A cache must never keep an edge down, nor make it crash-loop: a damaged
// file is moved aside and the edge starts without it, fetching the state
// from the coordinators. bbolt trusts its file: it reads pages through mmap,
// so a bad page makes it panic, in goroutines of its own (rebuilding a
// freelist, tx.Check) that no caller can recover, or touch an address past
// the file, which is a fatal fault rather than a panic. So Open first checks
// the file without bbolt: the meta page (by a read-only open, which reads
// nothing else), that the file holds every page it counts, and a walk of
// every page bbolt would follow, with bounds-checked reads (pages.go). Only
// then does bbolt open it for writing, run its consistency check and decode
// every record, in the calling goroutine with faults turned into panics and
// panics recovered. Any failure moves the file to path.corrupt-<unix time>;
// the newest three such files are kept and older ones removed, so a bad disk
// cannot fill up. A state that decodes but cannot be loaded (Load) is copied
// aside the same way and the store emptied.
//
// The file is 0600 and its directory is created 0700: it holds API key
// secrets.
package cache
