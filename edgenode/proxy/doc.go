// Package proxy owns the edge's HTTP/1.1 reverse proxy: it reads a request,
// routes it by its X-Routing-Key header on the current routing table, and
// forwards it to an endpoint of the chosen cell over a pooled keep-alive
// connection, streaming both bodies.
//
// It is its own small HTTP/1.1 implementation rather than net/http plus
// httputil.ReverseProxy, because that stack costs about three times what
// nginx does per request on a small machine. The request path allocates
// nothing in the common case: the head is parsed in place into reused
// buffers, routing is a few map lookups on an immutable table,
// Content-Length and close-delimited bodies are passed through, chunked
// ones are decoded strictly in place and re-chunked by the edge (the
// peer's chunk framing never reaches the other side; chunked.go), and
// bytes move through the connections' buffers, which are flushed only
// when the next read would block. Everything a
// reverse proxy must do still happens: hop-by-hop headers are dropped,
// X-Forwarded-For/-Proto/-Host and Forwarded are set by the edge (kept and
// extended only from TrustedProxies), the endpoint URL's path prefixes the
// request path, ambiguous framing is refused (request smuggling), and
// Upgrade (websocket) requests are tunnelled (tunnel.go: idle timeout,
// closed when their key is revoked). What a hostile client can make the
// edge spend is bounded (load.go, DESIGN.md "Resources under attack"):
// connections by MaxConns with accept backpressure, the time to send a
// head by HeadTimeout, held signed bodies by MaxHeldBodyBytes, an
// upstream's time by ResponseTimeout once the request was sent whole.
//
// Endpoint choice follows the cell's candidate order (own region, then the
// next regions by latency) and skips every endpoint whose route.Gate says
// no: replicated breaker open or half-open, health verdict UNHEALTHY, or a
// local trip after refused connections (the proxy reports connect failures
// and successes to the gate, so one edge stops using a dead endpoint at
// once). A cell with a panic threshold whose routable endpoints fall below
// it ignores the gates and routes over all its endpoints, as Envoy's
// healthy_panic_threshold does. Each request's outcome (success, connect
// error, timeout, 5xx) is counted on its endpoint's gate for the report
// package to send. When nothing is left the client gets 502 with a
// "reason" ("3 endpoints breaker-open", "upstream unreachable after 2
// attempts"); a request with X-Edge-Debug: 1 (where DebugHeader allows
// it) gets X-Edge-Route saying why
// its endpoint was chosen ("failover us-east->eu-west: 2 endpoints
// breaker-open", "own-region us-east: retried after us-east-1
// unreachable", "panic: 0 of 3 endpoints routable (threshold 50%), routing
// to all").
//
// A cell with an auth policy (auth.go) lets a request through only once it
// is authenticated, before an endpoint is chosen and before anything of it
// is rewritten. HMAC-signed requests are checked as package hmacsig
// specifies: the four signing headers, the key (known, not revoked,
// allowed for the cell: 401, 401, 403), the timestamp window, the
// signature in constant time against each secret valid now, newest first,
// over the request as received and the SHA-256 of its body, which is held
// in a per-connection buffer up to the cell's limit (413 beyond it, before
// reading when Content-Length says so) and sent upstream from there; last,
// the nonce is checked and stored by the coordinators (NonceChecker): a
// replay gets 401, no answer 503, never a pass. Bearer tokens go to a
// TokenVerifier (401, or 503 while the issuer's key set is unavailable).
// HMAC_OR_JWT checks a request with X-Signature as signed, any other as
// carrying a token. A client's X-Edge-Key-Id and X-Edge-Subject are dropped
// from every request; an authenticated one carries the edge's own (the key
// id, or the token's subject) upstream, with the signing headers and
// Authorization passed on as they came. Refusals are JSON like every other
// answer of the edge, with a "reason", and are counted in
// edgecell_edge_auth_total. Requests to cells without a policy pay one
// pointer test for all this and still allocate nothing.
//
// Retries follow net/http's reasoning (shouldRetryRequest), with a budget
// of one retry on another endpoint as an Envoy retry policy would set, so
// that no request reaches upstreams more often than it may:
//   - A request is sent to at most two endpoints: the first and one retry.
//     Endpoints skipped by their gate are not attempts.
//   - A refused connection sent nothing: any request moves on to the next
//     endpoint.
//   - A connection that fails before the upstream answered anything is
//     retried only if none of the request's body was read from the client,
//     and either nothing of the request was written or its method is
//     idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE). On a reused
//     pooled connection (likely closed by the upstream while idle) it goes
//     again to the same endpoint on a fresh connection; on a fresh one, to
//     another endpoint. A POST that reached an upstream is never sent twice.
//   - A response timeout (504), a response cut short, or a request whose
//     body was sent is never retried.
package proxy
