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
// Retries are safe by construction: another endpoint (or a fresh connection
// after a stale pooled one) is tried only while the request body has not
// been read at all, so a body is never sent twice.
package proxy
