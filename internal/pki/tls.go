package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ServerConfig is the TLS configuration of a server that authorizes per
// request (the gRPC API): it asks for a client certificate but completes the
// handshake without one, so that the refusal can be a gRPC status naming
// what was wrong instead of a TLS alert; the identity is verified once per
// connection by ServerCredentials. Never use it without that check.
func (s *Source) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &s.current().cert, nil
		},
	}
}

// StrictServerConfig is the TLS configuration of a server that admits only
// the given roles (the raft port): a client without a trusted certificate of
// one of them fails the handshake.
func (s *Source) StrictServerConfig(roles ...Role) *tls.Config {
	cfg := s.ServerConfig()
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := s.checkPeer(cs, x509.ExtKeyUsageClientAuth, roles)
		return err
	}
	return cfg
}

// ClientConfig is the TLS configuration of a client of a server with one of
// the given roles: it presents this holder's certificate and accepts a
// server whose certificate chains to the cluster CA and names one of those
// roles.
func (s *Source) ClientConfig(roles ...Role) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The server is verified by VerifyConnection below, against the
		// current CA pool and by role, as SPIFFE verifies a workload
		// (crypto/tls documents this pattern for custom verification).
		// Host names are not what identifies a coordinator: edges dial the
		// addresses members publish, which a certificate issued before an
		// address change would not name.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &s.current().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.checkPeer(cs, x509.ExtKeyUsageServerAuth, roles)
			return err
		},
	}
}

func (s *Source) checkPeer(cs tls.ConnectionState, usage x509.ExtKeyUsage, roles []Role) (Identity, error) {
	id, err := s.Verify(cs.PeerCertificates, usage)
	if err != nil {
		return Identity{}, err
	}
	if !slices.Contains(roles, id.Role) {
		return Identity{}, &RoleError{Got: id, Want: roles}
	}
	return id, nil
}

// RoleError is a trusted peer of the wrong role.
type RoleError struct {
	Got  Identity
	Want []Role
}

func (e *RoleError) Error() string {
	return fmt.Sprintf("the peer is %s, and only %s may do this", e.Got, roleList(e.Want))
}

func roleList(roles []Role) string {
	if len(roles) == 0 {
		return "no one"
	}
	out := ""
	for i, r := range roles {
		switch {
		case i == 0:
		case i == len(roles)-1:
			out += " or "
		default:
			out += ", "
		}
		out += r.article() + " " + string(r)
	}
	return out
}

// article is the indefinite article of the role's name: "an admin".
func (r Role) article() string {
	if r != "" && strings.IndexByte("aeiou", r[0]) >= 0 {
		return "an"
	}
	return "a"
}

// RoleList names roles for a message: "a coordinator or an admin".
func RoleList(roles ...Role) string { return roleList(roles) }

// ServerCredentials are gRPC server credentials over ServerConfig that
// verify each connection's client certificate once, after the handshake,
// and record the result in the connection's AuthInfo for PeerIdentity.
func (s *Source) ServerCredentials() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: credentials.NewTLS(s.ServerConfig()), src: s}
}

// ClientCredentials are gRPC client credentials over ClientConfig.
func (s *Source) ClientCredentials(roles ...Role) credentials.TransportCredentials {
	return credentials.NewTLS(s.ClientConfig(roles...))
}

type serverCreds struct {
	credentials.TransportCredentials
	src *Source
}

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	info, ok := ai.(credentials.TLSInfo)
	if !ok {
		conn.Close()
		return nil, nil, fmt.Errorf("pki: TLS handshake returned %T", ai)
	}
	out := AuthInfo{TLSInfo: info}
	out.Identity, out.Err = c.src.Verify(info.State.PeerCertificates, x509.ExtKeyUsageClientAuth)
	if out.Err == nil {
		out.NotAfter = info.State.PeerCertificates[0].NotAfter
	}
	return conn, out, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), src: c.src}
}

// AuthInfo is a gRPC connection's TLS state and the verified identity of
// its client, or why it has none.
type AuthInfo struct {
	credentials.TLSInfo
	Identity Identity
	NotAfter time.Time
	Err      error
}

// ErrPlaintext means a call arrived without TLS.
var ErrPlaintext = errors.New("the connection is not TLS")

// PeerIdentity returns the verified identity of a gRPC call's client. It
// fails when the client presented no certificate or an untrusted one, when
// the connection is not TLS, and when the certificate expired since the
// connection was opened.
func PeerIdentity(ctx context.Context, now time.Time) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, ErrPlaintext
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return Identity{}, ErrPlaintext
	}
	if ai.Err != nil {
		return Identity{}, ai.Err
	}
	if now.After(ai.NotAfter) {
		return Identity{}, fmt.Errorf("%w: the certificate of %s expired at %s", ErrUntrusted, ai.Identity, ai.NotAfter.UTC().Format(time.RFC3339))
	}
	return ai.Identity, nil
}
