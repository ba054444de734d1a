// Package jwtauth owns the edge's verification of OAuth-style bearer tokens
// (JWTs) for cells whose auth policy names an issuer, an audience and a JWKS
// URL. It owns the per-edge cache of each issuer's JSON Web Key Set and the
// rules for refreshing it; it does not decide which cells use bearer tokens
// nor how a failure becomes an HTTP response (the proxy does, from the
// sentinel errors in errors.go).
//
// JOSE itself is left to well-kept libraries: github.com/golang-jwt/jwt/v5
// parses and checks tokens, github.com/MicahParks/jwkset fetches and decodes
// key sets (and refreshes them on a timer), and github.com/MicahParks/keyfunc/v3
// picks the key named by a token's kid. This package adds what an edge needs
// on top:
//
//   - One cache per JWKS URL, shared by every cell naming that URL, created
//     on first use. The first use fetches the set and waits for it (bounded
//     by the caller's context); until one fetch has succeeded every token is
//     refused with ErrJWKSUnavailable.
//   - The set is refetched every CacheTTL (default one hour) in the
//     background. A token naming a kid the cache does not hold triggers one
//     immediate refetch, because the issuer may have rotated its keys.
//     Every fetch other than the timed one goes through one limiter per URL
//     (default: one per 30s), so a flood of tokens with made-up kids costs
//     the issuer at most one request per RefreshLimit from each edge;
//     concurrent callers share a fetch in flight instead of starting their own.
//   - A failed fetch never empties the cache: with the issuer down, tokens
//     keep verifying against the keys last fetched (failures are logged).
//
// Only RS256, ES256 and EdDSA are accepted, whatever keys the set holds:
// "none", HMAC and every other algorithm are refused before any key is looked
// at, and a key is used only with the algorithm of its type (and of its "alg",
// when the set gives one). exp is required; exp, nbf and iat are checked with a small
// leeway; iss must equal the policy's issuer and aud must contain its
// audience.
package jwtauth
