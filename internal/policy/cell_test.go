package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
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

// testCAPEM is a CA certificate made once for the upstream TLS tests.
var testCAPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

func TestValidateCellUpstream(t *testing.T) {
	up := func(ca, name string) *pb.Cell {
		return &pb.Cell{UpstreamTls: &pb.UpstreamTLS{CaPem: ca, ServerName: name}}
	}
	for _, tc := range []struct {
		name  string
		cell  *pb.Cell
		field string // "": valid
	}{
		{"CA", up(testCAPEM, ""), ""},
		{"two CAs and a server name", up(testCAPEM+testCAPEM, "api.internal.example"), ""},
		{"IP server name", up("", "10.0.0.7"), ""},
		{"upgrades", &pb.Cell{AllowedUpgrades: []string{"h2c", "TCP"}}, ""},
		{"not PEM", up("hello", ""), "upstream_tls.ca_pem"},
		{"junk after the PEM", up(testCAPEM+"junk", ""), "upstream_tls.ca_pem"},
		{"a private key", up("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", ""), "upstream_tls.ca_pem"},
		{"not a certificate inside", up("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ""), "upstream_tls.ca_pem"},
		{"too large", up(strings.Repeat(testCAPEM, MaxUpstreamCAPEM/len(testCAPEM)+1), ""), "upstream_tls.ca_pem"},
		{"server name with a path", up("", "api/x"), "upstream_tls.server_name"},
		{"server name label too long", up("", strings.Repeat("a", 64)+".example"), "upstream_tls.server_name"},
		{"upgrade with a version", &pb.Cell{AllowedUpgrades: []string{"h2c/1"}}, "allowed_upgrades"},
		{"empty upgrade", &pb.Cell{AllowedUpgrades: []string{""}}, "allowed_upgrades"},
		{"too many upgrades", &pb.Cell{AllowedUpgrades: strings.Split(strings.Repeat("p,", MaxAllowedUpgrades)+"p", ",")}, "allowed_upgrades"},
	} {
		err := ValidateCell(tc.cell)
		var pe *Error
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &pe) || pe.Field != tc.field):
			t.Errorf("%s: %v, want a refusal of %s", tc.name, err, tc.field)
		}
	}
}

// TestUpstreamOf: cells that verify the same way share a pool tag, cells
// that verify otherwise do not, and the defaults have none.
func TestUpstreamOf(t *testing.T) {
	a := UpstreamOf(&pb.Cell{UpstreamTls: &pb.UpstreamTLS{CaPem: testCAPEM}})
	b := UpstreamOf(&pb.Cell{UpstreamTls: &pb.UpstreamTLS{CaPem: testCAPEM}})
	c := UpstreamOf(&pb.Cell{UpstreamTls: &pb.UpstreamTLS{CaPem: testCAPEM, ServerName: "x.example"}})
	none := UpstreamOf(&pb.Cell{AllowedUpgrades: []string{"H2C"}})
	if a.PoolTag == "" || a.PoolTag != b.PoolTag || a.PoolTag == c.PoolTag || none.PoolTag != "" {
		t.Errorf("pool tags %q %q %q %q", a.PoolTag, b.PoolTag, c.PoolTag, none.PoolTag)
	}
	if cfg := c.TLSConfig("10.0.0.1"); cfg == nil || cfg.ServerName != "x.example" || cfg.RootCAs == nil {
		t.Errorf("TLSConfig: %+v", cfg)
	}
	if cfg := a.TLSConfig("api.example"); cfg.ServerName != "api.example" {
		t.Errorf("TLSConfig without server_name verifies %q", cfg.ServerName)
	}
	if none.TLSConfig("h") != nil || len(none.Upgrades) != 1 || none.Upgrades[0] != "h2c" {
		t.Errorf("defaults: %+v", none)
	}
}
