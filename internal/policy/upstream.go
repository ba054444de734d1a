package policy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/netip"
	"strings"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Bounds of a cell's upstream options.
const (
	MaxUpstreamCAPEM     = 64 << 10
	MaxAllowedUpgrades   = 16
	MaxUpgradeTokenBytes = 64
)

// Upstream is how an edge talks to a cell's endpoints, converted once per
// cell: which certificates its https endpoints must present and which
// Upgrade protocols it forwards besides websocket.
type Upstream struct {
	// Roots verify the endpoints' certificates; nil: the system roots.
	Roots *x509.CertPool
	// ServerName, if set, is verified (and sent as SNI) instead of each
	// endpoint URL's host.
	ServerName string
	// PoolTag tells pooled connections of differently verified cells
	// apart: empty for the defaults, else a digest of the options, so that
	// two cells on one address never share a connection one of them would
	// not have verified.
	PoolTag string
	// Upgrades are the cell's allowed_upgrades, lower-cased.
	Upgrades []string
}

// UpstreamOf converts the upstream options of c, which ValidateCell has
// passed: a CA that does not parse gives an empty pool (every handshake
// fails: closed, not open).
func UpstreamOf(c *pb.Cell) Upstream {
	var u Upstream
	if t := c.GetUpstreamTls(); t != nil && (t.GetCaPem() != "" || t.GetServerName() != "") {
		if t.GetCaPem() != "" {
			u.Roots = x509.NewCertPool()
			u.Roots.AppendCertsFromPEM([]byte(t.GetCaPem()))
		}
		u.ServerName = t.GetServerName()
		sum := sha256.Sum256([]byte(t.GetCaPem() + "\x00" + t.GetServerName()))
		u.PoolTag = hex.EncodeToString(sum[:8])
	}
	for _, p := range c.GetAllowedUpgrades() {
		u.Upgrades = append(u.Upgrades, strings.ToLower(p))
	}
	return u
}

// TLSConfig is the client TLS configuration for an endpoint of the cell
// whose URL's host is host, or nil when the cell has no options (the
// edge's default applies).
func (u *Upstream) TLSConfig(host string) *tls.Config {
	if u.PoolTag == "" {
		return nil
	}
	name := host
	if u.ServerName != "" {
		name = u.ServerName
	}
	return &tls.Config{RootCAs: u.Roots, ServerName: name, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

func checkUpstream(c *pb.Cell) *Error {
	if t := c.GetUpstreamTls(); t != nil {
		if e := checkUpstreamTLS(t); e != nil {
			return under("upstream_tls.", e)
		}
	}
	ups := c.GetAllowedUpgrades()
	if len(ups) > MaxAllowedUpgrades {
		return invalid("allowed_upgrades", "%d protocols; at most %d", len(ups), MaxAllowedUpgrades)
	}
	for i, p := range ups {
		if p == "" || len(p) > MaxUpgradeTokenBytes || !isToken(p) {
			return invalid("allowed_upgrades", "[%d] %q is not an Upgrade protocol name (RFC 9110 tchars, no version, 1 to %d bytes, such as \"h2c\" or \"tcp\")", i, p, MaxUpgradeTokenBytes)
		}
	}
	return nil
}

func checkUpstreamTLS(t *pb.UpstreamTLS) *Error {
	if ca := t.GetCaPem(); ca != "" {
		if len(ca) > MaxUpstreamCAPEM {
			return invalid("ca_pem", "%d bytes; at most %d", len(ca), MaxUpstreamCAPEM)
		}
		rest, certs := []byte(ca), 0
		for {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				return invalid("ca_pem", "holds a %q PEM block; only CERTIFICATE blocks (never a private key)", b.Type)
			}
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return invalid("ca_pem", "certificate %d does not parse: %v", certs+1, err)
			}
			certs++
		}
		if certs == 0 || strings.TrimSpace(string(rest)) != "" {
			return invalid("ca_pem", "want one or more PEM CERTIFICATE blocks and nothing else")
		}
	}
	if n := t.GetServerName(); n != "" && !validServerName(n) {
		return invalid("server_name", "%q is not a DNS name or IP address", n)
	}
	return nil
}

// validServerName reports whether n is an IP address or a DNS name
// (labels of 1 to 63 letters, digits and inner hyphens, 253 bytes in all).
func validServerName(n string) bool {
	if _, err := netip.ParseAddr(n); err == nil {
		return true
	}
	if len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
