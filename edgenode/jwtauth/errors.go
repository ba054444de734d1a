package jwtauth

import "errors"

// Sentinel errors. Verify wraps them (with %w, often alongside the library's
// own error) so that callers test them with errors.Is. The edge answers 401
// for the token errors, 503 for ErrJWKSUnavailable, and 500 for
// ErrInvalidPolicy and ErrClosed, which are its own faults.
var (
	// ErrMissingToken: the request carries no bearer token.
	ErrMissingToken = errors.New("missing bearer token")
	// ErrInvalidToken: the token is malformed, signed with an algorithm
	// other than RS256, ES256 or EdDSA, has a bad signature,
	// is not yet valid (nbf or iat in the future), or lacks exp, iss or aud.
	ErrInvalidToken = errors.New("invalid bearer token")
	// ErrExpired: the token's exp has passed (beyond the leeway).
	ErrExpired = errors.New("bearer token expired")
	// ErrWrongAudience: the token's aud does not contain the cell's audience.
	ErrWrongAudience = errors.New("bearer token is for another audience")
	// ErrWrongIssuer: the token's iss is not the cell's issuer.
	ErrWrongIssuer = errors.New("bearer token is from another issuer")
	// ErrUnknownKey: the token names a kid that the issuer's key set does
	// not hold, even after the refetch it may trigger.
	ErrUnknownKey = errors.New("bearer token signed with an unknown key")
	// ErrJWKSUnavailable: no fetch of the issuer's key set has succeeded yet
	// on this edge, so no token can be checked. Retrying later may succeed.
	ErrJWKSUnavailable = errors.New("issuer key set unavailable")
	// ErrInvalidPolicy: the cell's auth policy is incomplete or malformed;
	// the error names the field.
	ErrInvalidPolicy = errors.New("invalid JWT auth policy")
	// ErrClosed: Verify was called after Close.
	ErrClosed = errors.New("jwt verifiers closed")
)
