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
// Which coordinator: the edge cannot tell the leader (the edge protocol does
// not name it), and any member accepts the call and relays it to the leader.
// The client prefers the coordinator that has answered fastest (the leader
// itself, or the member with the shortest path to it), tries each one it has
// not measured yet, sends an occasional batch to the one it used least
// recently to keep the measurements current (a leader change shows up as a
// slower answer), and puts a coordinator whose call failed last for a
// growing while.
package nonce
