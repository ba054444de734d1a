// Package coordconn is the edge's one way to reach the coordinators: a pool
// of gRPC connections, one per coordinator address, shared by the watch
// stream (edgenode/watch), the reports and probes (edgenode/report) and the
// nonce checks (edgenode/nonce), with one rule for which coordinator a call
// goes to.
//
// The rule (Pool.Pick), in order:
//
//  1. Never a member the caller already tried for this call (the caller
//     moves on after a failure at once, not after a backoff).
//  2. Healthy members before ones whose call failed lately. A failure that
//     says the member is unwell (UNAVAILABLE, a timeout, a lost stream)
//     puts it last for a while that doubles with each failure in a row
//     (100ms up to 10s); an answer clears it. A refusal of the request
//     itself (INVALID_ARGUMENT, NOT_FOUND, ...) says nothing about the
//     member and changes nothing. Among members that failed, the one due
//     back first.
//  3. The route's affinity. Nearest (the watch choosing whom to follow):
//     none. Followed (reports, probes, CheckAssignment): the member the
//     watch stream follows, whose state is the one the edge serves and
//     whose connection is warm. Leader (nonce checks, which only the
//     leader answers and any other member relays): the leader, as the last
//     NOT_LEADER named it; failing that, the member that answered leader
//     calls fastest (the leader itself, or the member nearest it), each
//     member not yet measured being tried once, and one call in 64 going
//     to the member used least recently so that a leader change shows.
//  4. Preference order: members of the edge's region, then the other
//     members, then the configured seeds not among them; within each group
//     a stable per-edge permutation, so that the edges of a region spread
//     over its coordinators instead of all picking the first.
//
// Why this rule: it is what each caller did on its own before (the watch's
// region-first order, the reports' "the coordinator the watch streams
// from", the nonce client's fastest-first), made one ordering so that what
// one caller learns (a member that stopped answering, where the leader is)
// steers the others at once: a coordinator that died under a nonce check is
// not the next report's first choice, nor the watch's next stream.
//
// Not-leader answers: a coordinator refuses a call it would have to relay
// and cannot (it lost leadership during the call, or its relays kept
// meeting leadership changes) with a gRPC status carrying an
// errdetails.ErrorInfo of Domain "edgecell.io" and Reason "NOT_LEADER"
// (coordinator/server); NotLeader recognises it by that ErrorInfo, never by
// its message. Nothing was proposed, so the call may go anywhere else. The
// member that answered it is put last for Leader and Followed calls (both
// carry writes through the leader) but not for the watch, which a follower
// serves well. When the ErrorInfo's "leader" metadata names the leader (a
// member name, or its gRPC address), Leader calls go there next; the
// coordinators name it whenever the refusing member knows a leader other
// than itself, and otherwise Leader calls find it by answer time.
//
// Connections are made lazily by gRPC, kept for the pool's life (a
// connection to a member the table no longer lists is closed once the
// watch does not follow it), reconnect
// within 3s of a coordinator coming back, and ping every 20s so that a
// dead path is noticed without a call. A call on a connection that cannot
// be made fails at once, so the caller can move on.
package coordconn
