package policy

import (
	"net/url"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Defaults and bounds of a cell's AuthPolicy.
const (
	DefaultTimestampWindow = 300 * time.Second
	MaxTimestampWindow     = time.Hour
	DefaultMaxBodyBytes    = 1 << 20
	MaxMaxBodyBytes        = 64 << 20
)

// Auth is a cell's authentication policy as an edge applies it, defaults
// filled in. Mode is AUTH_MODE_UNSPECIFIED for a cell without one.
type Auth struct {
	Mode pb.AuthMode
	// Window is how far X-Timestamp may be from the edge's clock.
	Window time.Duration
	// MaxBody is the largest signed body buffered for hashing.
	MaxBody int64
	// Issuer, Audience and JWKSURL are the JWT policy's.
	Issuer, Audience, JWKSURL string
}

// HMAC reports whether requests may be HMAC-signed; JWT whether they may
// carry a bearer token.
func (a Auth) HMAC() bool {
	return a.Mode == pb.AuthMode_AUTH_MODE_HMAC || a.Mode == pb.AuthMode_AUTH_MODE_HMAC_OR_JWT
}

// JWT reports whether requests may carry a bearer token.
func (a Auth) JWT() bool {
	return a.Mode == pb.AuthMode_AUTH_MODE_JWT || a.Mode == pb.AuthMode_AUTH_MODE_HMAC_OR_JWT
}

// AuthOf converts a cell's auth policy (nil: none).
func AuthOf(p *pb.AuthPolicy) Auth {
	a := Auth{
		Mode: p.GetMode(), Window: time.Duration(p.GetTimestampWindowS()) * time.Second, MaxBody: int64(p.GetMaxBodyBytes()),
		Issuer: p.GetJwt().GetIssuer(), Audience: p.GetJwt().GetAudience(), JWKSURL: p.GetJwt().GetJwksUrl(),
	}
	orDuration(&a.Window, DefaultTimestampWindow)
	if a.MaxBody <= 0 {
		a.MaxBody = DefaultMaxBodyBytes
	}
	return a
}

// checkAuth validates a cell's auth policy (not nil); fields are relative
// to it ("jwt.issuer").
func checkAuth(a *pb.AuthPolicy) *Error {
	if _, ok := pb.AuthMode_name[int32(a.GetMode())]; !ok {
		return invalid("mode", "mode %d is not one of NONE, HMAC, JWT, HMAC_OR_JWT", a.GetMode())
	}
	if w := time.Duration(a.GetTimestampWindowS()) * time.Second; w > MaxTimestampWindow {
		return invalid("timestamp_window_s", "timestamp_window_s %d is over %d", a.GetTimestampWindowS(), int(MaxTimestampWindow/time.Second))
	}
	if a.GetMaxBodyBytes() > MaxMaxBodyBytes {
		return invalid("max_body_bytes", "max_body_bytes %d is over %d", a.GetMaxBodyBytes(), MaxMaxBodyBytes)
	}
	if !AuthOf(a).JWT() {
		if a.GetJwt() != nil {
			return invalid("jwt", "a jwt policy needs mode JWT or HMAC_OR_JWT (mode is %s)", a.GetMode())
		}
		return nil
	}
	j := a.GetJwt()
	for _, f := range []struct{ name, v string }{{"issuer", j.GetIssuer()}, {"audience", j.GetAudience()}, {"jwks_url", j.GetJwksUrl()}} {
		if f.v == "" {
			return invalid("jwt."+f.name, "%s is required for mode %s", f.name, a.GetMode())
		}
	}
	if u, err := url.Parse(j.GetJwksUrl()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("jwt.jwks_url", "jwks_url %q must be an absolute http or https URL", j.GetJwksUrl())
	}
	return nil
}
