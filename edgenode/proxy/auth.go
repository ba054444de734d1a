package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"time"

	"github.com/edgecell/edgecell/edgenode/jwtauth"
	"github.com/edgecell/edgecell/edgenode/route"
	"github.com/edgecell/edgecell/hmacsig"
	"github.com/edgecell/edgecell/internal/policy"
)

// NonceChecker checks and stores the nonce of an HMAC-signed request with
// the coordinators; *nonce.Client is one.
type NonceChecker interface {
	// Check reports whether nonce was never used with key keyID, storing it
	// until expiresUnixMs if so: true for the first use, false for a
	// replay. An error means no answer came: the request is refused (503).
	Check(keyID string, nonce []byte, expiresUnixMs int64) (fresh bool, err error)
}

// TokenVerifier verifies bearer tokens; *jwtauth.Verifiers is one.
type TokenVerifier interface {
	// Verify checks token against p and returns its claims; errors wrap
	// the jwtauth sentinels (ErrJWKSUnavailable, ErrInvalidPolicy and
	// ErrClosed give 503, the others 401).
	Verify(ctx context.Context, p jwtauth.Policy, token string) (jwtauth.Claims, error)
}

// The headers the edge sets on an authenticated request for the upstream.
// A client's own are dropped from every request, so an upstream can trust
// them whatever the cell's policy.
const (
	headerEdgeKeyID   = "X-Edge-Key-Id"
	headerEdgeSubject = "X-Edge-Subject"
)

// authResult is how authenticating a request ended: the result label of
// edgecell_edge_auth_total. Missing, repeated or malformed signing headers
// count as bad_signature.
type authResult uint8

const (
	authOK authResult = iota
	authUnknownKey
	authRevoked
	authForbidden
	authStale
	authBadSignature
	authReplay
	authTooLarge
	authUnavailable
	authBadToken
	numAuthResults
)

var authResultNames = [numAuthResults]string{
	"ok", "unknown_key", "revoked", "forbidden", "stale", "bad_signature", "replay", "too_large", "unavailable", "bad_token",
}

func (a authResult) String() string { return authResultNames[a] }

// status is the HTTP status and error message of a refusal.
func (a authResult) status() (int, string) {
	switch a {
	case authForbidden:
		return 403, "forbidden"
	case authTooLarge:
		return 413, "request body too large"
	case authUnavailable:
		return 503, "authentication unavailable"
	}
	return 401, "unauthorized"
}

// authState is what a connection keeps to authenticate requests, made on
// its first request to a cell with an auth policy and reused after.
type authState struct {
	verifier *hmacsig.Verifier
	canon    []byte
	held     heldBody
}

func (c *conn) authState() *authState {
	if c.auth == nil {
		c.auth = &authState{verifier: hmacsig.NewVerifier(), canon: make([]byte, 0, 256)}
		c.auth.held.init(c.s)
	}
	return c.auth
}

// authenticate applies the cell's auth policy (mode set; the table's, built
// once per cell) to the request. It returns true when the request may go
// on, with c.rs.identity set for the upstream; otherwise the client has been
// answered and c.rs.keep says whether the connection stays open.
func (c *conn) authenticate(t *route.Table, cell *route.Cell, pol *policy.Auth, start time.Time) bool {
	switch {
	case pol.HMAC() && (!pol.JWT() || c.rs.req.hasField("x-signature")):
		return c.checkHMAC(t, cell, pol, start)
	case pol.JWT():
		return c.checkJWT(pol)
	}
	return c.refuse(authUnavailable, "cell has an auth mode this edge does not know: "+pol.Mode.String())
}

// refuse answers the request with the status of res and why as the reason,
// counts it, and returns false (the request goes no further).
func (c *conn) refuse(res authResult, why string) bool {
	return c.refuseWith(res, why, "")
}

// refuseWith is refuse with a WWW-Authenticate challenge.
func (c *conn) refuseWith(res authResult, why, challenge string) bool {
	c.s.metrics.authResult(res)
	status, msg := res.status()
	c.whyBuf = append(c.whyBuf[:0], why...)
	name := ""
	if challenge != "" {
		name = "WWW-Authenticate"
	}
	c.rs.keep = c.replyWith(status, msg, c.whyBuf, name, challenge)
	return false
}

// accept records the identity an authenticated request carries upstream.
func (c *conn) accept(header, identity string) bool {
	c.s.metrics.authResult(authOK)
	c.rs.identityHeader, c.rs.identity = header, identity
	return true
}

// signedFields are a request's signing headers; nil when absent.
type signedFields struct {
	keyID, timestamp, nonce, signature []byte
}

// collect finds the signing headers among r's fields and returns the name
// of one that appears more than once ("" when none does): the edge would
// verify one value and the upstream might read another.
func (f *signedFields) collect(r *request) string {
	for i := range r.fields {
		fl := &r.fields[i]
		if fl.kind != hOther {
			continue
		}
		var dst *[]byte
		var name string
		switch len(fl.name) {
		case len("x-nonce"):
			if eqFold(fl.name, "x-nonce") {
				dst, name = &f.nonce, hmacsig.HeaderNonce
			}
		case len("x-key-id"):
			if eqFold(fl.name, "x-key-id") {
				dst, name = &f.keyID, hmacsig.HeaderKeyID
			}
		case len("x-timestamp"):
			switch {
			case eqFold(fl.name, "x-timestamp"):
				dst, name = &f.timestamp, hmacsig.HeaderTimestamp
			case eqFold(fl.name, "x-signature"):
				dst, name = &f.signature, hmacsig.HeaderSignature
			}
		}
		if dst == nil {
			continue
		}
		if *dst != nil {
			return name
		}
		*dst = fl.value // never nil, even when empty: it points into the head
	}
	return ""
}

// missing returns the refusal reason for the first signing header absent
// or empty, in the order hmacsig checks them; "" when all are there.
func (f *signedFields) missing() string {
	switch {
	case len(f.keyID) == 0:
		return "missing " + hmacsig.HeaderKeyID + " header"
	case len(f.timestamp) == 0:
		return "missing " + hmacsig.HeaderTimestamp + " header"
	case len(f.nonce) == 0:
		return "missing " + hmacsig.HeaderNonce + " header"
	case len(f.signature) == 0:
		return "missing " + hmacsig.HeaderSignature + " header"
	}
	return ""
}

// hasField reports whether the request has a header named lower (lower case).
func (r *request) hasField(lower string) bool {
	for i := range r.fields {
		if f := &r.fields[i]; len(f.name) == len(lower) && eqFold(f.name, lower) {
			return true
		}
	}
	return false
}

// checkHMAC verifies an HMAC-signed request in the order the hmacsig
// package specifies: headers, key (exists, not revoked, allowed for the
// cell), timestamp window, nonce syntax, then the signature over the body
// (held in the connection's buffer up to the policy's limit), and last the
// nonce with the coordinators. The request target verified is the one
// received (in origin form) with its dot segments removed (the path the
// upstream gets, so a signature covers what is forwarded), before any
// endpoint's path prefix is added: a client signs the normalised path.
func (c *conn) checkHMAC(t *route.Table, cell *route.Cell, pol *policy.Auth, start time.Time) bool {
	r := &c.rs.req
	var f signedFields
	if dup := f.collect(r); dup != "" {
		return c.refuse(authBadSignature, dup+" header appears more than once")
	}
	if why := f.missing(); why != "" {
		return c.refuse(authBadSignature, why)
	}
	key := t.Key(string(f.keyID))
	switch {
	case key == nil:
		return c.refuse(authUnknownKey, "unknown key")
	case key.Revoked:
		return c.refuse(authRevoked, "key revoked")
	case !key.Allows(cell.ID()):
		return c.refuse(authForbidden, "key not allowed for this cell")
	}
	ts, err := hmacsig.ParseTimestamp(f.timestamp)
	if err != nil {
		return c.refuse(authBadSignature, err.Error())
	}
	if err := hmacsig.CheckTimestamp(ts, start, pol.Window); err != nil {
		return c.refuse(authStale, err.Error())
	}
	if !hmacsig.ValidNonce(f.nonce) {
		return c.refuse(authBadSignature, "malformed "+hmacsig.HeaderNonce+": want 1 to 128 characters of A-Z a-z 0-9 . _ -")
	}
	if len(f.signature) != hmacsig.SignatureLen {
		return c.refuse(authBadSignature, "malformed "+hmacsig.HeaderSignature+": want 64 lowercase hex digits")
	}
	st := c.authState()
	body, ok := c.holdBody(st, pol.MaxBody)
	if !ok {
		return false
	}
	st.canon = hmacsig.AppendCanonical(st.canon[:0], r.method, r.target, r.routingKey, f.timestamp, f.nonce, sha256.Sum256(body))
	nowMs := start.UnixMilli()
	signed := false
	for _, s := range key.Secrets { // newest first
		if s.ValidAt(nowMs) && st.verifier.Verify(s.Value, st.canon, f.signature) {
			signed = true
			break
		}
	}
	if !signed {
		return c.refuse(authBadSignature, "bad signature")
	}
	if c.s.cfg.Nonces == nil {
		return c.refuse(authUnavailable, "this edge has no nonce store")
	}
	expires := (ts + int64(pol.Window/time.Second)) * 1000
	fresh, err := c.s.cfg.Nonces.Check(key.ID, f.nonce, expires)
	switch {
	case err != nil:
		c.s.log.Debug("nonce check failed; refusing a signed request", "key", key.ID, "err", err) // the nonce client warns, once per batch
		return c.refuse(authUnavailable, "coordinators unreachable for the nonce check")
	case !fresh:
		return c.refuse(authReplay, "nonce already used")
	}
	return c.accept(headerEdgeKeyID, key.ID)
}

// checkJWT verifies the request's bearer token against the cell's issuer,
// audience and key set.
func (c *conn) checkJWT(pol *policy.Auth) bool {
	const challenge, invalid = `Bearer`, `Bearer error="invalid_token"`
	var auth []byte
	for i := range c.rs.req.fields {
		if f := &c.rs.req.fields[i]; f.kind == hOther && len(f.name) == len("authorization") && eqFold(f.name, "authorization") {
			if auth != nil {
				return c.refuseWith(authBadToken, "Authorization header appears more than once", invalid)
			}
			auth = f.value
		}
	}
	token, err := jwtauth.BearerToken(string(auth))
	if err != nil {
		return c.refuseWith(authBadToken, "missing bearer token", challenge)
	}
	if c.s.cfg.Tokens == nil {
		return c.refuse(authUnavailable, "this edge has no token verifier")
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.AuthTimeout)
	claims, err := c.s.cfg.Tokens.Verify(ctx, jwtauth.Policy{Issuer: pol.Issuer, Audience: pol.Audience, JWKSURL: pol.JWKSURL}, token)
	cancel()
	switch {
	case errors.Is(err, jwtauth.ErrJWKSUnavailable), errors.Is(err, jwtauth.ErrInvalidPolicy), errors.Is(err, jwtauth.ErrClosed):
		c.s.log.Debug("cannot verify bearer tokens; refusing a request", "jwks_url", pol.JWKSURL, "err", err) // jwtauth warns of failed fetches
		return c.refuse(authUnavailable, err.Error())
	case err != nil:
		return c.refuseWith(authBadToken, err.Error(), invalid)
	case !validFieldValue(claims.Subject):
		return c.refuseWith(authBadToken, "token subject is not a valid header value", invalid)
	}
	return c.accept(headerEdgeSubject, claims.Subject)
}

// appendAuth appends "; key k_1" or "; subject alice" to an X-Edge-Route
// value for an authenticated request (which sets identityHeader).
func (c *conn) appendAuth(b []byte) []byte {
	switch {
	case c.rs.identityHeader == "":
	case c.rs.identityHeader == headerEdgeKeyID:
		b = append(append(b, "; key "...), c.rs.identity...)
	case c.rs.identity == "":
		b = append(b, "; token without subject"...)
	default:
		b = append(append(b, "; subject "...), c.rs.identity...)
	}
	return b
}

// tooLarge is the reason of a 413: "body over the cell's limit of 1048576 bytes".
func tooLarge(limit int64) string {
	return "body over the cell's limit of " + strconv.FormatInt(limit, 10) + " bytes"
}
