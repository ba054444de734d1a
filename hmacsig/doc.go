// Package hmacsig owns the HMAC-SHA256 request signature that edgecell edges
// require before they proxy a request to a cell: the client side (Signer,
// which signs a net/http request) and the verifier side (Verifier, which
// checks the raw bytes an edge parsed, without allocating). This comment is
// the scheme's specification; a client in any language that follows it is
// accepted by the edges.
//
// # Headers
//
// A signed request carries four headers besides its own:
//
//	X-Key-Id     the id of an API key the coordinators hold
//	X-Timestamp  the time of signing, in unix seconds: decimal digits, no
//	             sign, no leading zeros ("1700000000")
//	X-Nonce      1 to 128 characters of A-Z a-z 0-9 . _ -, never used before
//	             with this key (22 random URL-safe base64 characters, 128
//	             bits, is what Signer sends)
//	X-Signature  64 lowercase hexadecimal digits: the HMAC defined below
//
// Each appears once. The routing header X-Routing-Key, when present, is
// covered by the signature too.
//
// # Signature
//
// The canonical string is six fields joined by a newline (0x0A), with no
// newline after the last one:
//
//	method            as on the request line, case preserved ("POST")
//	request-target    the path and query exactly as sent on the request line,
//	                  in origin form: the escaped path, then "?" and the raw
//	                  query when there is one ("/v1/orders?id=42"). No
//	                  decoding, re-encoding or reordering; the fragment is
//	                  never sent and is not part of it. A path that is empty
//	                  is "/". In Go this is req.URL.RequestURI(). One
//	                  exception: a path with "." or ".." segments (also
//	                  written %2e) is signed with them removed as RFC 3986
//	                  5.2.4 says, "/a/./b/../c" as "/a/c" (NormalizeTarget),
//	                  because that is what an edge forwards; one that
//	                  climbs above the root is refused.
//	routing key       the X-Routing-Key value without leading and trailing
//	                  spaces and tabs, or the empty string when the header
//	                  is absent
//	timestamp         the X-Timestamp value
//	nonce             the X-Nonce value
//	body hash         the lowercase hex SHA-256 of the body bytes as sent
//	                  (after any Content-Encoding, before any
//	                  Transfer-Encoding); with no body, the hash of the empty
//	                  string, e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
//
// No field can contain a newline (header values, methods and request
// targets cannot), so the string is unambiguous. X-Signature is the
// lowercase hex HMAC-SHA256 (RFC 2104) of the canonical string's bytes,
// keyed with the bytes of the key's secret. The key id is not in the
// canonical string: a different id selects a different secret.
//
// # Verification
//
// An edge checks, in this order, and refuses the request at the first
// failure:
//
//  1. all four headers are present and not empty (ErrMissingHeader);
//  2. the key exists, is not revoked and may reach the request's cell (the
//     edge's own checks, outside this package);
//  3. X-Timestamp is well formed (ErrBadTimestamp) and within the window of
//     the edge's clock, DefaultWindow (300 s) by default, in either direction
//     (ErrStaleTimestamp), so that clocks may be a little ahead or behind;
//  4. X-Nonce is well formed (ErrBadNonce);
//  5. X-Signature equals the HMAC it computes over the request as received,
//     compared in constant time (ErrBadSignature); an uppercase signature
//     does not match;
//  6. the nonce has not been seen with this key within the window: the
//     coordinators store it (the edge's own check, outside this package).
//
// The edge verifies the request target it received before rewriting it for
// the upstream. A client that sends an absolute-form target
// ("http://host/path") through a forward proxy signs its origin form
// ("/path"), which is what the edge verifies after normalising it.
//
// # Worked example
//
// Key id "k1" with secret "example-secret-do-not-use" signs
//
//	POST /v1/orders?region=eu-west&id=42 HTTP/1.1
//	X-Routing-Key: tenant-1
//	Content-Type: application/json
//
//	{"item":"book","qty":1}
//
// at 1700000000 (2023-11-14T22:13:20Z) with nonce "Xq3v9bZ0-dTjA_7w2LkQ1e".
// The body's SHA-256 is
// 4aa4ec241bf2361f80ae066124ae25357a3e5c6a9be730efcbd80724bbe02021, so the
// canonical string is
//
//	POST
//	/v1/orders?region=eu-west&id=42
//	tenant-1
//	1700000000
//	Xq3v9bZ0-dTjA_7w2LkQ1e
//	4aa4ec241bf2361f80ae066124ae25357a3e5c6a9be730efcbd80724bbe02021
//
// and the request is sent with
//
//	X-Key-Id: k1
//	X-Timestamp: 1700000000
//	X-Nonce: Xq3v9bZ0-dTjA_7w2LkQ1e
//	X-Signature: 7899e341ce95d7bae22b4fd666c7d4a7e1095a3a9aa01c100c713f5919994bb7
//
// The same signature from a shell:
//
//	body='{"item":"book","qty":1}'
//	printf '%s\n%s\n%s\n%s\n%s\n%s' POST '/v1/orders?region=eu-west&id=42' \
//	    tenant-1 1700000000 Xq3v9bZ0-dTjA_7w2LkQ1e \
//	    "$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)" |
//	  openssl dgst -sha256 -hmac 'example-secret-do-not-use' -r
//
// `edgecell request --key-id k1 --secret ... URL` signs and sends a request
// this way.
//
// # Go
//
// Clients use Signer.Sign on an *http.Request before sending it. Edges fill
// a Request with the bytes they parsed (FromHTTP does it for a net/http
// server) and call Verifier.Check, or use the pieces (AppendCanonical, ParseTimestamp, CheckTimestamp, ValidNonce,
// Verifier.Verify) directly. A Verifier reuses its buffers and allocates
// nothing on the success path; it is not safe for concurrent use, so keep
// one per connection or per goroutine.
package hmacsig
