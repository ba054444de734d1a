package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// conversation is what each side of one TLS connection saw.
type conversation struct {
	serverErr, clientErr error
	// serverSaw and clientSaw are the leaf certificates each side received.
	serverSaw, clientSaw *x509.Certificate
}

// talk opens one TLS connection over loopback and has the client send a byte
// and the server answer one: in TLS 1.3 a client learns that the server
// refused its certificate only when it reads.
func talk(t *testing.T, server, client *tls.Config) conversation {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	deadline := time.Now().Add(10 * time.Second)
	type result struct {
		err error
		saw *x509.Certificate
	}
	served := make(chan result, 1)
	go func() {
		raw, err := lis.Accept()
		if err != nil {
			served <- result{err: err}
			return
		}
		defer raw.Close()
		raw.SetDeadline(deadline)
		conn := tls.Server(raw, server)
		var r result
		r.err = conn.Handshake()
		if certs := conn.ConnectionState().PeerCertificates; len(certs) > 0 {
			r.saw = certs[0]
		}
		if r.err == nil {
			buf := make([]byte, 1)
			if _, r.err = conn.Read(buf); r.err == nil {
				_, r.err = conn.Write(buf)
			}
		}
		served <- r
	}()

	var c conversation
	raw, err := net.DialTimeout("tcp", lis.Addr().String(), time.Until(deadline))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(deadline)
	conn := tls.Client(raw, client)
	c.clientErr = conn.Handshake()
	if certs := conn.ConnectionState().PeerCertificates; len(certs) > 0 {
		c.clientSaw = certs[0]
	}
	if c.clientErr == nil {
		buf := []byte{1}
		if _, c.clientErr = conn.Write(buf); c.clientErr == nil {
			_, c.clientErr = conn.Read(buf)
		}
	}
	conn.Close()
	r := <-served
	c.serverErr, c.serverSaw = r.err, r.saw
	return c
}

// world is two CAs and the holders the handshake tests use.
type world struct {
	now          time.Time
	ca, other    *CA
	caDir        string
	otherDir     string
	roots        *x509.CertPool // ca's
	coordinator  *Source
	edge, admin  *Source
	viewer       *Source
	foreignAdmin *Source // of the other CA
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{now: time.Now()}
	// Both CAs were created two days ago, so that certificates can be
	// issued (and expire) in the past.
	w.ca, w.caDir = testCA(t, w.now.Add(-48*time.Hour))
	w.other, w.otherDir = testCA(t, w.now.Add(-48*time.Hour))
	w.roots = x509.NewCertPool()
	w.roots.AddCert(w.ca.Cert)
	w.coordinator = newSource(t, w.ca, w.caDir, coordinator)
	w.edge = newSource(t, w.ca, w.caDir, edge)
	w.admin = newSource(t, w.ca, w.caDir, admin)
	w.viewer = newSource(t, w.ca, w.caDir, viewer)
	w.foreignAdmin = newSource(t, w.other, w.otherDir, admin)
	return w
}

// pair is a key pair of ca's for req, for a peer that does not go through a
// Source (one whose certificate a Source would refuse to load).
func pair(t *testing.T, ca *CA, req IssueRequest) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := issue(t, ca, req)
	p, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expired is a key pair for id that was valid for an hour yesterday.
func (w *world) expired(t *testing.T, id Identity) tls.Certificate {
	return pair(t, w.ca, IssueRequest{Identity: id, Now: w.now.Add(-24 * time.Hour), Lifetime: time.Hour})
}

// rawServer presents cert and checks nothing.
func rawServer(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
}

// rawClient presents certs (none, or one) and trusts any server.
func rawClient(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: certs, InsecureSkipVerify: true}
}

// outcome is what one side of a connection should see.
type outcome struct {
	text string // a substring of the error; "" for success
	is   error  // a sentinel the error wraps, or nil
	role bool   // the error is a *RoleError
}

func (o outcome) check(t *testing.T, side string, err error) {
	t.Helper()
	wantErr(t, side, err, o.text)
	if o.is != nil && !errors.Is(err, o.is) {
		t.Errorf("%s: %v does not wrap %v", side, err, o.is)
	}
	var re *RoleError
	if got := errors.As(err, &re); got != o.role {
		t.Errorf("%s: %v: is a *RoleError = %v, want %v", side, err, got, o.role)
	}
}

// Alerts a side receives when its peer refused its certificate.
const (
	badCertificate      = "remote error: tls: bad certificate"
	certificateRequired = "remote error: tls: certificate required"
)

func TestHandshakes(t *testing.T) {
	w := newWorld(t)
	twoIdentities := certWithURIs(t, w.ca, w.now, admin.String(), viewer.String())
	tests := []struct {
		name           string
		server, client func() *tls.Config
		wantServer     outcome
		wantClient     outcome
	}{
		{
			name:   "an admin to a raft port that admits coordinators and admins",
			server: func() *tls.Config { return w.coordinator.StrictServerConfig(RoleCoordinator, RoleAdmin) },
			client: func() *tls.Config { return w.admin.ClientConfig(RoleCoordinator) },
		},
		{
			name:   "a coordinator to a coordinator",
			server: func() *tls.Config { return w.coordinator.StrictServerConfig(RoleCoordinator) },
			client: func() *tls.Config { return w.coordinator.ClientConfig(RoleCoordinator) },
		},
		{
			name:   "a coordinator to an edge (both roles serve)",
			server: func() *tls.Config { return w.edge.StrictServerConfig(RoleCoordinator) },
			client: func() *tls.Config { return w.coordinator.ClientConfig(RoleEdge) },
		},
		{
			name:       "an edge to a port for coordinators",
			server:     func() *tls.Config { return w.coordinator.StrictServerConfig(RoleCoordinator) },
			client:     func() *tls.Config { return w.edge.ClientConfig(RoleCoordinator) },
			wantServer: outcome{text: "the peer is spiffe://edgecell/edge/us-east/e1, and only a coordinator may do this", role: true},
			wantClient: outcome{text: badCertificate},
		},
		{
			name:       "a viewer to a port for coordinators and admins",
			server:     func() *tls.Config { return w.coordinator.StrictServerConfig(RoleCoordinator, RoleAdmin) },
			client:     func() *tls.Config { return w.viewer.ClientConfig(RoleCoordinator) },
			wantServer: outcome{text: "the peer is spiffe://edgecell/viewer/bob, and only a coordinator or an admin may do this", role: true},
			wantClient: outcome{text: badCertificate},
		},
		{
			name:       "a client that wants a coordinator and reaches an edge",
			server:     func() *tls.Config { return w.edge.StrictServerConfig(RoleAdmin) },
			client:     func() *tls.Config { return w.admin.ClientConfig(RoleCoordinator) },
			wantServer: outcome{text: badCertificate},
			wantClient: outcome{text: "the peer is spiffe://edgecell/edge/us-east/e1, and only a coordinator may do this", role: true},
		},
		{
			name:       "an admin certificate posing as a server",
			server:     func() *tls.Config { return rawServer(pair(t, w.ca, IssueRequest{Identity: admin})) },
			client:     func() *tls.Config { return w.admin.ClientConfig(RoleAdmin) },
			wantServer: outcome{text: badCertificate},
			wantClient: outcome{text: "x509: certificate specifies an incompatible key usage", is: ErrUntrusted},
		},
		{
			name:       "a client of another CA",
			server:     func() *tls.Config { return w.coordinator.StrictServerConfig(RoleAdmin) },
			client:     func() *tls.Config { return rawClient(w.foreignAdmin.current().cert) },
			wantServer: outcome{text: "certificate not trusted: x509: certificate signed by unknown authority", is: ErrUntrusted},
			wantClient: outcome{text: badCertificate},
		},
		{
			name:       "a server of another CA",
			server:     func() *tls.Config { return rawServer(pair(t, w.other, IssueRequest{Identity: coordinator})) },
			client:     func() *tls.Config { return w.admin.ClientConfig(RoleCoordinator) },
			wantServer: outcome{text: badCertificate},
			wantClient: outcome{text: "certificate not trusted: x509: certificate signed by unknown authority", is: ErrUntrusted},
		},
		{
			name:       "an expired client",
			server:     func() *tls.Config { return w.coordinator.StrictServerConfig(RoleAdmin) },
			client:     func() *tls.Config { return rawClient(w.expired(t, admin)) },
			wantServer: outcome{text: "x509: certificate has expired or is not yet valid", is: ErrUntrusted},
			wantClient: outcome{text: badCertificate},
		},
		{
			name:       "an expired server",
			server:     func() *tls.Config { return rawServer(w.expired(t, coordinator)) },
			client:     func() *tls.Config { return w.admin.ClientConfig(RoleCoordinator) },
			wantServer: outcome{text: badCertificate},
			wantClient: outcome{text: "x509: certificate has expired or is not yet valid", is: ErrUntrusted},
		},
		{
			name:       "a client without a certificate",
			server:     func() *tls.Config { return w.coordinator.StrictServerConfig(RoleAdmin) },
			client:     func() *tls.Config { return rawClient() },
			wantServer: outcome{text: "client didn't provide a certificate"},
			wantClient: outcome{text: certificateRequired},
		},
		{
			name:       "a client whose certificate names two identities",
			server:     func() *tls.Config { return w.coordinator.StrictServerConfig(RoleAdmin, RoleViewer) },
			client:     func() *tls.Config { return rawClient(twoIdentities) },
			wantServer: outcome{text: "it names 2, a certificate must name exactly one", is: ErrUntrusted},
			wantClient: outcome{text: badCertificate},
		},
		{
			name:       "a client of a foreign trust domain",
			server:     func() *tls.Config { return w.coordinator.StrictServerConfig(RoleAdmin) },
			client:     func() *tls.Config { return rawClient(certWithURIs(t, w.ca, w.now, "spiffe://example.org/admin/alice")) },
			wantServer: outcome{text: "no spiffe://edgecell/ URI SAN", is: ErrUntrusted},
			wantClient: outcome{text: badCertificate},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := talk(t, tt.server(), tt.client())
			tt.wantServer.check(t, "server", c.serverErr)
			tt.wantClient.check(t, "client", c.clientErr)
		})
	}
}

func TestCABundleTrustsBothCAs(t *testing.T) {
	w := newWorld(t)
	// During a CA rotation every holder trusts a bundle of the old CA and
	// the new one.
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(bundle, append(append([]byte{}, w.ca.CertPEM()...), w.other.CertPEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	holder := func(ca *CA, caDir string, id Identity) *Source {
		f := writeHolder(t, ca, caDir, IssueRequest{Identity: id})
		f.CA = bundle
		src, err := NewSource(f, nil)
		if err != nil {
			t.Fatalf("a bundle holding its CA does not load: %v", err)
		}
		return src
	}
	oldCoordinator, newCoordinator := holder(w.ca, w.caDir, coordinator), holder(w.other, w.otherDir, coordinator)
	oldAdmin, newAdmin := holder(w.ca, w.caDir, admin), holder(w.other, w.otherDir, admin)
	for _, server := range []*Source{oldCoordinator, newCoordinator} {
		for _, client := range []*Source{oldAdmin, newAdmin} {
			c := talk(t, server.StrictServerConfig(RoleAdmin), client.ClientConfig(RoleCoordinator))
			if c.serverErr != nil || c.clientErr != nil {
				t.Errorf("server of %s, client of %s: server %v, client %v",
					server.current().leaf.Issuer.CommonName, client.current().leaf.Issuer.CommonName, c.serverErr, c.clientErr)
			}
		}
	}
	// A holder that trusts only the old CA still refuses the new one.
	c := talk(t, w.coordinator.StrictServerConfig(RoleAdmin), newAdmin.ClientConfig(RoleCoordinator))
	outcome{text: "signed by unknown authority", is: ErrUntrusted}.check(t, "server trusting the old CA only", c.serverErr)

	// LoadCA finds the issuer in a bundle by its key.
	if err := os.WriteFile(filepath.Join(w.otherDir, CACertFile), w.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCA(w.otherDir)
	wantErr(t, "LoadCA with another CA's ca.pem", err, "no CA certificate in it matches "+filepath.Join(w.otherDir, CAKeyFile))
	if err := os.WriteFile(filepath.Join(w.otherDir, CACertFile), []byte(string(w.ca.CertPEM())+string(w.other.CertPEM())), 0o644); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(w.otherDir)
	if err != nil || !ca.Cert.Equal(w.other.Cert) {
		t.Errorf("LoadCA of a bundle: %v; want the CA whose key is beside it", err)
	}
}

// identityServer is a gRPC server over ServerCredentials whose interceptor
// answers each call with PeerIdentity, as the coordinators' authorization
// does.
type identityServer struct {
	addr string
	now  func() time.Time

	mu   sync.Mutex
	seen []error // PeerIdentity's error for each call
}

func startIdentityServer(t *testing.T, src *Source, now func() time.Time) *identityServer {
	t.Helper()
	s := &identityServer{now: now}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	srv := grpc.NewServer(grpc.Creds(src.ServerCredentials()), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			id, err := PeerIdentity(ctx, s.now())
			s.mu.Lock()
			s.seen = append(s.seen, err)
			s.mu.Unlock()
			if err != nil {
				return nil, status.Error(codes.Unauthenticated, err.Error())
			}
			if err := grpc.SetHeader(ctx, metadata.Pairs("identity", id.String())); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return s
}

func (s *identityServer) lastErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		return nil
	}
	return s.seen[len(s.seen)-1]
}

// check makes one health check and returns the identity the server saw.
func check(t *testing.T, addr string, creds credentials.TransportCredentials) (string, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var md metadata.MD
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
	return strings.Join(md.Get("identity"), ","), err
}

func TestGRPCPeerIdentity(t *testing.T) {
	w := newWorld(t)
	var clock fakeClock
	clock.set(w.now)
	srv := startIdentityServer(t, w.coordinator, clock.now)
	// A client that verifies the server by its address, as grpcurl does.
	withCert := func(certs ...tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{RootCAs: w.roots, Certificates: certs})
	}
	tests := []struct {
		name     string
		creds    credentials.TransportCredentials
		identity string
		want     outcome // what the server's PeerIdentity returned
	}{
		{"an admin", w.admin.ClientCredentials(RoleCoordinator), admin.String(), outcome{}},
		{"an edge", w.edge.ClientCredentials(RoleCoordinator), edge.String(), outcome{}},
		{"a client that verifies host names", withCert(w.viewer.current().cert), viewer.String(), outcome{}},
		{"a client without a certificate", withCert(), "", outcome{text: "no client certificate: edgecell requires one from the cluster CA", is: ErrNoCertificate}},
		{"a client of another CA", withCert(w.foreignAdmin.current().cert), "", outcome{text: "x509: certificate signed by unknown authority", is: ErrUntrusted}},
		{"an expired client", withCert(w.expired(t, admin)), "", outcome{text: "x509: certificate has expired", is: ErrUntrusted}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := check(t, srv.addr, tt.creds)
			if got != tt.identity {
				t.Errorf("the server saw %q, want %q", got, tt.identity)
			}
			if tt.want.text == "" {
				if err != nil {
					t.Errorf("health check: %v", err)
				}
				return
			}
			tt.want.check(t, "PeerIdentity", srv.lastErr())
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), tt.want.text) {
				t.Errorf("the client got %v, want Unauthenticated with %q", err, tt.want.text)
			}
		})
	}

	t.Run("a connection that outlives its client's certificate", func(t *testing.T) {
		conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(w.admin.ClientCredentials(RoleCoordinator)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := healthpb.NewHealthClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		defer clock.set(w.now)
		clock.set(w.admin.NotAfter().Add(time.Second))
		_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("a call after the certificate expired: %v, want Unauthenticated", err)
		}
		outcome{text: "the certificate of spiffe://edgecell/admin/alice expired at", is: ErrUntrusted}.check(t, "PeerIdentity", srv.lastErr())
	})

	t.Run("a plaintext call", func(t *testing.T) {
		_, err := PeerIdentity(context.Background(), w.now)
		if !errors.Is(err, ErrPlaintext) {
			t.Errorf("PeerIdentity without a peer: %v, want ErrPlaintext", err)
		}
	})
}
