// Package proxy owns the edge's HTTP/1.1 reverse proxy: it reads a request,
// routes it by its X-Routing-Key header on the current routing table, and
// forwards it to an endpoint of the chosen cell over a pooled keep-alive
// connection, streaming both bodies.
//
// It is its own small HTTP/1.1 implementation rather than net/http plus
// httputil.ReverseProxy, because that stack costs about three times what
// nginx does per request on a small machine. The request path allocates
// nothing in the common case: the head is parsed in place into reused
// buffers, routing is a few map lookups on an immutable table, message
// framing (Content-Length, chunked, close-delimited) is passed through
// without re-encoding, and bytes move through the connections' buffers,
// which are flushed only when the next read would block. Everything a
// reverse proxy must do still happens: hop-by-hop headers are dropped,
// X-Forwarded-For/-Proto/-Host are set, the endpoint URL's path prefixes the
// request path, ambiguous framing is refused (request smuggling), and
// Upgrade (websocket) requests are tunnelled.
//
// Endpoint choice follows the cell's candidate order (own region, then the
// next regions by latency) and skips every endpoint whose route.Gate says
// no: replicated breaker open or half-open, health verdict UNHEALTHY, or a
// local trip after refused connections (the proxy reports connect failures
// and successes to the gate, so one edge stops using a dead endpoint at
// once). Each request's outcome (success, connect error, timeout, 5xx) is
// counted on its endpoint's gate for the report package to send. When
// nothing is left the client gets 502 with a "reason" ("3 endpoints
// breaker-open"); a request with X-Edge-Debug: 1 gets X-Edge-Route saying
// why its endpoint was chosen ("failover us-east->eu-west: 2 endpoints
// breaker-open").
//
// Retries are safe by construction: another endpoint (or a fresh connection
// after a stale pooled one) is tried only while the request body has not
// been read at all, so a body is never sent twice.
package proxy
