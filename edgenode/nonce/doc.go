// Package nonce is the edge's client of the coordinators' nonce store. After
// an HMAC-signed request passed every other check, the proxy asks Check
// whether the request's (key, nonce) was ever used; the coordinators store
// it if not, linearizably (EdgeService.CheckNonces), so that of all the
// requests carrying one nonce, through any edge, exactly one is accepted.
//
// What the client adds around that RPC:
//
//   - Batching. Checks from concurrent requests are queued; a few senders
//     (MaxInFlight) each take whatever is waiting, up to MaxBatch, and send
//     it as one CheckNonces call. An idle sender takes a lone check at once,
//     so batching costs no latency; under load the next batch fills while
//     the RPCs in flight are answered (the coordinators group-commit the
//     same way).
//   - Retries that cannot change an answer. Every check carries a check id
//     unique per edge process ("<edge>/<boot id>/<counter>"); a batch whose
//     RPC failed is resent with the same ids, on another coordinator when
//     there is one, so a retry never turns an accepted nonce into a replay
//     nor a replay into an accepted one.
//   - Failing closed. A check gets an answer or an error within Timeout
//     (retries included); the proxy then answers 503. It never reports a
//     nonce fresh without a coordinator's answer.
//   - A local cache of replays. Every (key, nonce) this edge got an answer
//     for, fresh or not, is remembered until its expiry (a bounded number,
//     oldest forgotten first): a request repeating it is a replay, answered
//     without an RPC.
//
// Which coordinator: checks are Leader calls on the edge's coordinator pool
// (edgenode/coordconn), which holds the one rule for every call to the
// coordinators. Any member accepts a check and relays it to the leader, so
// any member can answer; the pool sends it to the leader when a NOT_LEADER
// named it, else to the member that answered checks fastest (the leader
// itself, or the member with the shortest path to it), trying each one not
// yet measured and sending an occasional batch to the one used least
// recently to keep the measurements current; a member whose call failed is
// tried last for a growing while, and a retry goes to another member at
// once.
package nonce
