// Package state owns the coordinators' replicated state: regions and
// latencies, cells and their endpoints, placements, the default cell, the
// coordinator members, API keys, the nonce store, per-endpoint breaker and
// health state, and the cluster id. It is the pure half of the raft state machine: the
// raftstore package decodes a committed log entry and calls Store.Apply with
// the entry's index; nothing here imports raft, reads a clock or does I/O, so
// applying the same log to two stores gives the same state, results and
// changes.
//
// # Revisions
//
// Writes are index-first (as in Consul's state store): a command that changes
// the state moves the store's revision to the command's raft index, and every
// cell and placement it writes is stamped with mod_revision = index (and
// create_revision = index when it is new; an update keeps the original
// create_revision). Input stamps are ignored. A command that succeeds without
// changing anything (an ApplyConfig identical to the current config, a
// PutCell equal to the stored cell, ...) leaves the revision and every stamp
// as they were and produces no Change. A refused command leaves the state
// untouched. So Revision is the index of the last change, which can be lower
// than raft's last applied index.
//
// # Breakers and health
//
// The store also holds, per endpoint, an internal/breaker.Breaker and an
// internal/health.State, created on the endpoint's first report with its
// cell's policies, given the new policies when the config changes them, and
// dropped (without an event) when the endpoint leaves the config. The
// commands that drive them (ReportOutcomes, ReportHealth, Tick, GrantProbe,
// ProbeResult, ResetBreaker) use the command's now_unix_nano, the leader's
// clock, and never read one. An unknown endpoint is refused (NOT_FOUND, the
// field naming it); a refused batch counts nothing.
//
// Edge reports are idempotent: a ReportOutcomes or ReportHealth batch with
// a non-zero batch_id equal to the last one counted for the same edge (and
// kind) is a retry, acknowledged without counting (see reports.go), so an
// edge may resend a batch whose outcome it does not know.
//
// Revision rule: a command that only moves counters (a failure run, the
// rate window, an edge's observation) is applied on every replica but emits
// no event and does not move the revision, so frequent edge reports do not
// wake every watcher. A command that changes what edges route on or
// operators read as status (the breaker's Status: state, probe holder, trips,
// ejection, reason; the health verdict) emits put_breaker or put_health and
// moves the revision to its index, which the status carries as mod_revision.
// Hence all members show the same statuses at the same revision, while
// counters may differ between members only until they apply the same index.
//
// # Keys and nonces
//
// API keys are ordinary replicated objects: stamped, published to watchers
// with their secrets (edges verify signatures with them), listed to
// operators without. A rotation keeps the old secret valid for a bounded
// grace period; a revocation is a change every edge receives.
//
// The nonce store makes a signed request acceptable at most once anywhere:
// a CheckNonces command stores each (key id, nonce) it has not seen and
// answers "fresh" for exactly those, in log order, so two edges racing with
// the same nonce get one "fresh" between them on every replica. A retried
// check with the same check_id gets its first answer again. Nonces are kept
// as long as any edge within NonceExpiryMargin of the leader's clock would
// still accept their request (nonceKeepUntil, capped at MaxNonceLifetime),
// only for existing, unrevoked keys, and are reaped by Tick in bounded
// steps. Nonces move no revision and emit no event: answers go to the
// caller only. They are part of every snapshot, so a restarted member
// refuses the same replays.
//
// # Change events
//
// Every change yields one pb.Change holding all its events. ApplyConfig emits
// the difference between the old and the new config, in this order:
//
//  1. set_topology, when regions, latencies or default_cell changed;
//  2. put_cell for new and changed cells, by id;
//  3. put_placement for new and changed placements, by key;
//  4. delete_placement for removed placements, by key;
//  5. delete_cell for removed cells, by id.
//
// An edge applying the events one by one therefore never holds a placement
// that names a missing cell, and the cells it receives only name regions it
// already knows. The default cell and removed regions are consistent only at
// the end of the Change (the topology arrives first, so a new default cell
// may be announced just before the put_cell that creates it): edges must
// validate and swap a whole Change at once, which they do anyway.
//
// # Commands and versioned operations
//
// Each case of pb.Command's oneof op has one entry in the registry
// (registry.go): its handler and its facts (whether it changes cells, so
// that endpoint states follow; whether it is ignorable). Apply looks the op
// up there; TestRegistryCoversEveryOp fails when a case has no entry.
//
// Binaries of different versions share one log during a rolling upgrade, so
// a member may meet a committed command whose op its binary does not apply
// (a newer leader's op lands among the unknown fields of the Command it
// decodes; command.proto numbers ops from 10 so that it is found by number).
// Applying the rest of the log without that command would let its state
// diverge, silently; panicking would take down every older member at once,
// and again at each restart. So:
//
//   - An ignorable command (Command.ignorable, set by the leader from the
//     op's registry entry) is skipped: no change, the result says skipped.
//     Only an op whose effect no older binary reads may be ignorable, since
//     the member that skipped it never gets that effect, even once upgraded.
//   - Any other command halts the store: it applies nothing from that
//     command on (Halted says which op at which index), so its state stays a
//     true prefix of the log. Above it, raftstore stops advancing the applied
//     index and refuses snapshots (which would otherwise record the skipped
//     entries as applied and let raft compact them away) and restores, the
//     API answers UNAVAILABLE and the health service NOT_SERVING. Restarted
//     with a binary that applies the op, the member restores its last
//     snapshot, taken before the halt, and replays the log from there: it is
//     whole again, with nothing to repair.
//   - A snapshot lists the ops of the non-ignorable commands its state has
//     applied (Snapshot.ops_applied). A binary that does not apply one of
//     them halts the same way instead of restoring it: a newer binary's
//     snapshot, kept on disk across a downgrade or sent by a newer leader,
//     may hold state the older binary cannot represent.
//
// The halt is the safety net; the leader keeps it from being needed. Every
// member advertises the ops its binary applies in its member record
// (Member.ops, written when it starts), and the leader's raft store proposes
// a non-ignorable op only when every member of the raft configuration lists
// it, refusing otherwise with FAILED_PRECONDITION naming the members to
// upgrade. A record that lists no ops is a binary from before the field,
// which applies the legacy set (fields 10 to 27), so upgrading from one is
// not blocked. A new op therefore becomes usable once the last member runs a
// binary that has it: no flag day, no feature switch.
//
// # Concurrency and cost
//
// The state is held in immutable copy-on-write B-trees (github.com/tidwall/btree).
// Apply, called from a single goroutine, builds the next version, sharing every
// untouched node with the previous one, and publishes it with one atomic store.
// A reader takes one version with Store.Freeze (an O(1) atomic load, no lock)
// and reads it through the View it gets: every read of a View answers from
// that version, so an answer assembled from several reads has one revision,
// and no reader sees a half-applied command. Store itself has no read
// methods. A PutPlacement costs O(log n) in the number of placements;
// View.Placements(prefix, ...) seeks in key order and costs O(log n + page
// size); View.Snapshot copies the objects (O(n)) but never blocks Apply.
package state
