package policy

import (
	"errors"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Every refusal names the field as the proto spells it, relative to the cell.
func TestValidateCellNamesTheProtoField(t *testing.T) {
	jwt := func(j *pb.JwtPolicy) *pb.AuthPolicy { return &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_JWT, Jwt: j} }
	okJWT := &pb.JwtPolicy{Issuer: "i", Audience: "a", JwksUrl: "https://idp/jwks"}
	for _, tc := range []struct {
		cell  *pb.Cell
		field string // "": valid
	}{
		{&pb.Cell{}, ""},
		{&pb.Cell{Breaker: &pb.BreakerPolicy{}, HealthCheck: &pb.HealthCheckPolicy{}, Auth: &pb.AuthPolicy{}}, ""},
		{&pb.Cell{Auth: jwt(okJWT), PanicThresholdPercent: 100, Breaker: &pb.BreakerPolicy{MaxEjectionPercent: 100}}, ""},
		{&pb.Cell{Breaker: &pb.BreakerPolicy{BaseEjectionMs: 5000, MaxEjectionMs: 1000}}, "breaker.max_ejection_ms"},
		{&pb.Cell{Breaker: &pb.BreakerPolicy{WindowMs: 5}}, "breaker.window_ms"},
		{&pb.Cell{Breaker: &pb.BreakerPolicy{FailureRateThreshold: 1.5}}, "breaker.failure_rate_threshold"},
		{&pb.Cell{Breaker: &pb.BreakerPolicy{MaxEjectionPercent: 101}}, "breaker.max_ejection_percent"},
		{&pb.Cell{HealthCheck: &pb.HealthCheckPolicy{HttpPath: "healthz"}}, "health_check.http_path"},
		{&pb.Cell{HealthCheck: &pb.HealthCheckPolicy{IntervalMs: 1000, TimeoutMs: 2000}}, "health_check.timeout_ms"},
		{&pb.Cell{HealthCheck: &pb.HealthCheckPolicy{TimeoutMs: 6000}}, "health_check.timeout_ms"}, // over the default interval
		{&pb.Cell{PanicThresholdPercent: 101}, "panic_threshold_percent"},
		{&pb.Cell{Auth: &pb.AuthPolicy{Mode: 9}}, "auth.mode"},
		{&pb.Cell{Auth: &pb.AuthPolicy{TimestampWindowS: 3601}}, "auth.timestamp_window_s"},
		{&pb.Cell{Auth: &pb.AuthPolicy{MaxBodyBytes: MaxMaxBodyBytes + 1}}, "auth.max_body_bytes"},
		{&pb.Cell{Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC, Jwt: okJWT}}, "auth.jwt"},
		{&pb.Cell{Auth: jwt(&pb.JwtPolicy{Audience: "a", JwksUrl: "https://idp/jwks"})}, "auth.jwt.issuer"},
		{&pb.Cell{Auth: jwt(&pb.JwtPolicy{Issuer: "i", Audience: "a", JwksUrl: "idp/jwks"})}, "auth.jwt.jwks_url"},
		// The order of the checks: auth first, then the panic threshold.
		{&pb.Cell{Auth: &pb.AuthPolicy{Mode: 9}, PanicThresholdPercent: 101}, "auth.mode"},
	} {
		err := ValidateCell(tc.cell)
		var pe *Error
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%v: valid cell refused: %v", tc.cell, err)
		case tc.field == "":
		case !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Field != tc.field || pe.Reason == "":
			t.Errorf("%v: error %#v, want an *Error naming %s", tc.cell, err, tc.field)
		}
	}
}

func TestValidCellsCostNoAllocation(t *testing.T) {
	c := &pb.Cell{Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC}, Breaker: &pb.BreakerPolicy{WindowMs: 1000}, HealthCheck: &pb.HealthCheckPolicy{HttpPath: "/h"}}
	if n := testing.AllocsPerRun(100, func() { _ = ValidateCell(c) }); n != 0 {
		t.Fatalf("ValidateCell of a valid cell: %v allocations", n)
	}
}

func TestCellOfFillsDefaults(t *testing.T) {
	got := CellOf(&pb.Cell{PanicThresholdPercent: 250, Breaker: &pb.BreakerPolicy{LocalEjectionMs: 700},
		Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC}})
	want := DefaultBreaker()
	want.LocalEjection = 700 * time.Millisecond
	if got.Breaker != want {
		t.Fatalf("breaker %+v: want 700ms local ejection, every other default", got.Breaker)
	}
	if got.PanicThresholdPercent != MaxPanicThresholdPercent || !got.Auth.HMAC() || got.Auth.Window != DefaultTimestampWindow ||
		got.Check != (Check{Path: DefaultCheckPath, Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout}) {
		t.Fatalf("cell policy %+v", got)
	}
	if CellOf(&pb.Cell{}) != CellOf(nil) {
		t.Fatal("a cell without policies must read as every default")
	}
}
