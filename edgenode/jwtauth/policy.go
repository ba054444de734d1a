package jwtauth

import (
	"fmt"
	"net/url"
)

// Policy is the bearer-token part of a cell's auth policy.
type Policy struct {
	// Issuer must equal the token's iss claim.
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// JWKSURL is where the issuer publishes its keys: an absolute http or
	// https URL (https outside tests and private networks). Every cell
	// naming the same URL shares one cached key set on an edge.
	JWKSURL string
}

// Validate reports the first missing or malformed field, wrapping
// ErrInvalidPolicy.
func (p Policy) Validate() error {
	if err := p.validateClaims(); err != nil {
		return err
	}
	return validateJWKSURL(p.JWKSURL)
}

// validateClaims checks the fields Verify needs on every call; the URL is
// checked once, when its cache is created.
func (p Policy) validateClaims() error {
	switch {
	case p.Issuer == "":
		return fmt.Errorf("%w: issuer is required", ErrInvalidPolicy)
	case p.Audience == "":
		return fmt.Errorf("%w: audience is required", ErrInvalidPolicy)
	}
	return nil
}

func validateJWKSURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: jwks_url is required", ErrInvalidPolicy)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: jwks_url %q: %v", ErrInvalidPolicy, raw, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: jwks_url %q must be an absolute http or https URL", ErrInvalidPolicy, raw)
	}
	return nil
}
