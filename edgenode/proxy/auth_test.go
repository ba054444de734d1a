package proxy

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	"github.com/edgecell/edgecell/edgenode/jwtauth"
	"github.com/edgecell/edgecell/edgenode/nonce"
	"github.com/edgecell/edgecell/edgenode/report"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
)

// upstreamSaw is what the recording upstream got of one request.
type upstreamSaw struct {
	path               string
	keyIDs, subjects   []string
	signature          string
	body               string
	contentLength      int64
	chunked            bool
	expect             string
	authorizationCount int
}

// recorder is an upstream that records every request it gets.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []upstreamSaw
}

func startRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, upstreamSaw{
			path: r.URL.RequestURI(), keyIDs: r.Header.Values("X-Edge-Key-Id"), subjects: r.Header.Values("X-Edge-Subject"),
			signature: r.Header.Get("X-Signature"), body: string(body), contentLength: r.ContentLength,
			chunked: len(r.TransferEncoding) > 0, expect: r.Header.Get("Expect"), authorizationCount: len(r.Header.Values("Authorization")),
		})
		rec.mu.Unlock()
		fmt.Fprint(w, "upstream ok")
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) seen() []upstreamSaw {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]upstreamSaw(nil), r.reqs...)
}

// memNonces is a nonce store in memory with the coordinators' answer: the
// first check of a (key, nonce) is fresh, every later one a replay.
type memNonces struct {
	mu   sync.Mutex
	seen map[string]int64
}

func (m *memNonces) Check(keyID string, n []byte, expiresUnixMs int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := keyID + "\x00" + string(n)
	if _, ok := m.seen[k]; ok {
		return false, nil
	}
	m.seen[k] = expiresUnixMs
	return true, nil
}

func (m *memNonces) expiry(keyID, n string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen[keyID+"\x00"+n]
}

// issuer is a JWT issuer with one Ed25519 key, publishing its JWKS over HTTP.
type issuer struct {
	priv ed25519.PrivateKey
	jwks *httptest.Server
}

const (
	testIssuer   = "https://issuer.test"
	testAudience = "cell-api"
)

func startIssuer(t *testing.T) *issuer {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "kid": "key-1", "alg": "EdDSA", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(pub),
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(set)
	}))
	t.Cleanup(srv.Close)
	return &issuer{priv: priv, jwks: srv}
}

func (is *issuer) token(t *testing.T, sub string, exp time.Time) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.RegisteredClaims{
		Issuer: testIssuer, Audience: jwt.ClaimStrings{testAudience}, Subject: sub,
		IssuedAt: jwt.NewNumericDate(exp.Add(-time.Hour)), ExpiresAt: jwt.NewNumericDate(exp),
	})
	tok.Header["kid"] = "key-1"
	s, err := tok.SignedString(is.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authSetup is a proxy in front of one recording upstream, with a cell per
// auth mode and a few API keys.
type authSetup struct {
	*harness
	up     *recorder
	iss    *issuer
	nonces *memNonces
	c      *http.Client
}

// Secrets of the test keys.
var (
	liveSecret    = []byte("live-secret")
	rotatedNew    = []byte("rotated-new")
	rotatedGrace  = []byte("rotated-in-grace")
	rotatedExpire = []byte("rotated-expired")
)

const maxBody = 1024

// hangUp is an upstream that reads a request head and closes the
// connection without answering.
func hangUp(t testing.TB) string {
	return serveRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil || len(line) <= 2 {
				return
			}
		}
	})
}

func authTestState(upURL, jwksURL, deadJWKS string) *pb.State {
	ep := func(id string) []*pb.Endpoint {
		return []*pb.Endpoint{{Id: id, Url: upURL + "/prefix", Region: "us-east"}}
	}
	jwtPolicy := &pb.JwtPolicy{Issuer: testIssuer, Audience: testAudience, JwksUrl: jwksURL}
	now := time.Now()
	return &pb.State{Revision: 3, Config: &pb.RoutingConfig{
		Cells: []*pb.Cell{
			{Id: "open", Endpoints: ep("open-1")},
			{Id: "signed", Endpoints: ep("signed-1"), Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC, TimestampWindowS: 60, MaxBodyBytes: maxBody}},
			{Id: "signed-big", Endpoints: ep("signed-big-1"), Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC}},
			{Id: "tokens", Endpoints: ep("tokens-1"), Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_JWT, Jwt: jwtPolicy}},
			{Id: "either", Endpoints: ep("either-1"), Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC_OR_JWT, Jwt: jwtPolicy}},
			{Id: "no-jwks", Endpoints: ep("no-jwks-1"), Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_JWT,
				Jwt: &pb.JwtPolicy{Issuer: testIssuer, Audience: testAudience, JwksUrl: deadJWKS}}},
		},
		Placements: []*pb.Placement{
			{Key: "open", Cell: "open"}, {Key: "signed", Cell: "signed"}, {Key: "tokens", Cell: "tokens"},
			{Key: "either", Cell: "either"}, {Key: "no-jwks", Cell: "no-jwks"}, {Key: "signed-big", Cell: "signed-big"},
		},
	}, Keys: []*pb.ApiKey{
		{Id: "k_live", Secrets: []*pb.KeySecret{{Secret: string(liveSecret)}}},
		{Id: "k_revoked", Revoked: true},
		{Id: "k_open_only", Cells: []string{"open", "either"}, Secrets: []*pb.KeySecret{{Secret: string(liveSecret)}}},
		{Id: "k_rotated", Secrets: []*pb.KeySecret{
			{Secret: string(rotatedNew)},
			{Secret: string(rotatedGrace), NotAfterUnixMs: now.Add(time.Hour).UnixMilli()},
			{Secret: string(rotatedExpire), NotAfterUnixMs: now.Add(-time.Second).UnixMilli()},
		}},
	}}
}

func startAuth(t *testing.T, tweak func(*Config)) *authSetup {
	up := startRecorder(t)
	iss := startIssuer(t)
	tb, err := route.Build("us-east", authTestState(up.srv.URL, iss.jwks.URL, "http://"+edgetest.ClosedAddr(t)+"/jwks"))
	if err != nil {
		t.Fatal(err)
	}
	nonces := &memNonces{seen: map[string]int64{}}
	tokens := jwtauth.New(jwtauth.Config{})
	t.Cleanup(tokens.Close)
	h := startProxy(t, tb, func(c *Config) {
		c.Nonces, c.Tokens = nonces, tokens
		if tweak != nil {
			tweak(c)
		}
	})
	return &authSetup{harness: h, up: up, iss: iss, nonces: nonces, c: client(t)}
}

// signed returns a request to the proxy with routing key key, signed by
// signer (nil: unsigned).
func (s *authSetup) signed(t *testing.T, signer *hmacsig.Signer, method, key, path, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := s.request(method, key, path, rd)
	if signer != nil {
		if err := signer.Sign(req); err != nil {
			t.Fatal(err)
		}
	}
	return req
}

// send sends req and returns the status, the decoded error body (if any)
// and the response.
func (s *authSetup) send(t *testing.T, req *http.Request) (int, errBody, *http.Response) {
	t.Helper()
	resp, err := s.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb errBody
	if resp.StatusCode != 200 {
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("status %d body %q: %v", resp.StatusCode, b, err)
		}
		if eb.Ray != resp.Header.Get("X-Edge-Ray") || !rayRE.MatchString(eb.Ray) {
			t.Fatalf("ray %q in body, %q in header", eb.Ray, resp.Header.Get("X-Edge-Ray"))
		}
	}
	return resp.StatusCode, eb, resp
}

// resend is the same request (same headers, same body) once more.
func resend(t *testing.T, req *http.Request) *http.Request {
	t.Helper()
	again := req.Clone(context.Background())
	if req.GetBody != nil {
		again.Body, _ = req.GetBody()
	}
	return again
}

func TestSignedRequestReachesUpstreamWithTheEdgesIdentity(t *testing.T) {
	s := startAuth(t, nil)
	body := `{"item":"book"}`
	req := s.signed(t, &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}, "POST", "signed", "/v1/orders?id=42&a=b", body)
	// A client cannot pass for someone else: its own identity headers go.
	req.Header.Add("X-Edge-Key-Id", "k_admin")
	req.Header.Add("X-Edge-Subject", "root")
	req.Header.Set("X-Edge-Debug", "1")
	status, eb, resp := s.send(t, req)
	if status != 200 {
		t.Fatalf("status %d %+v, want 200", status, eb)
	}
	if route := resp.Header.Get("X-Edge-Route"); !strings.HasSuffix(route, "; key k_live") {
		t.Fatalf("X-Edge-Route %q, want it to name the key", route)
	}
	saw := s.up.seen()
	if len(saw) != 1 {
		t.Fatalf("upstream got %d requests", len(saw))
	}
	got := saw[0]
	if len(got.keyIDs) != 1 || got.keyIDs[0] != "k_live" || len(got.subjects) != 0 {
		t.Fatalf("upstream saw X-Edge-Key-Id %q, X-Edge-Subject %q; want only the edge's k_live", got.keyIDs, got.subjects)
	}
	// Verified as received, then the endpoint's prefix is added.
	if got.path != "/prefix/v1/orders?id=42&a=b" || got.body != body || got.contentLength != int64(len(body)) {
		t.Fatalf("upstream saw %+v", got)
	}
	if got.signature != req.Header.Get("X-Signature") {
		t.Fatal("the signing headers should pass through as they came")
	}
	if n := s.metrics.Auth("ok"); n != 1 {
		t.Fatalf("auth ok counted %d times", n)
	}
}

func TestSignedRequestRefusals(t *testing.T) {
	s := startAuth(t, nil)
	live := &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}
	tests := []struct {
		name   string
		req    func() *http.Request
		status int
		reason string // the whole reason, or its start when it ends with "..."
		result string
	}{
		{"missing nonce", func() *http.Request {
			r := s.signed(t, live, "GET", "signed", "/x", "")
			r.Header.Del("X-Nonce")
			return r
		}, 401, "missing X-Nonce header", "bad_signature"},
		{"no signature at all", func() *http.Request { return s.signed(t, nil, "GET", "signed", "/x", "") },
			401, "missing X-Key-Id header", "bad_signature"},
		{"repeated header", func() *http.Request {
			r := s.signed(t, live, "GET", "signed", "/x", "")
			r.Header.Add("X-Timestamp", "1")
			return r
		}, 401, "X-Timestamp header appears more than once", "bad_signature"},
		{"unknown key", func() *http.Request {
			return s.signed(t, &hmacsig.Signer{KeyID: "k_nobody", Secret: liveSecret}, "GET", "signed", "/x", "")
		}, 401, "unknown key", "unknown_key"},
		{"revoked key", func() *http.Request {
			return s.signed(t, &hmacsig.Signer{KeyID: "k_revoked", Secret: liveSecret}, "GET", "signed", "/x", "")
		}, 401, "key revoked", "revoked"},
		{"key for other cells", func() *http.Request {
			return s.signed(t, &hmacsig.Signer{KeyID: "k_open_only", Secret: liveSecret}, "GET", "signed", "/x", "")
		}, 403, "key not allowed for this cell", "forbidden"},
		{"stale timestamp", func() *http.Request {
			old := &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret, Now: func() time.Time { return time.Now().Add(-2 * time.Minute) }}
			return s.signed(t, old, "GET", "signed", "/x", "")
		}, 401, "X-Timestamp: timestamp outside the window: ...", "stale"},
		{"wrong secret", func() *http.Request {
			return s.signed(t, &hmacsig.Signer{KeyID: "k_live", Secret: []byte("guess")}, "GET", "signed", "/x", "")
		}, 401, "bad signature", "bad_signature"},
		{"body changed after signing", func() *http.Request {
			r := s.signed(t, live, "POST", "signed", "/x", "pay 10")
			r.Body, r.GetBody = io.NopCloser(strings.NewReader("pay 99")), nil
			return r
		}, 401, "bad signature", "bad_signature"},
		{"query changed after signing", func() *http.Request {
			r := s.signed(t, live, "GET", "signed", "/x?amount=10", "")
			r.URL.RawQuery = "amount=99"
			return r
		}, 401, "bad signature", "bad_signature"},
		{"rotated secret past its grace", func() *http.Request {
			return s.signed(t, &hmacsig.Signer{KeyID: "k_rotated", Secret: rotatedExpire}, "GET", "signed", "/x", "")
		}, 401, "bad signature", "bad_signature"},
		{"body over the limit", func() *http.Request {
			return s.signed(t, live, "POST", "signed", "/x", strings.Repeat("a", maxBody+1))
		}, 413, "body over the cell's limit of 1024 bytes", "too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, counted := len(s.up.seen()), s.metrics.Auth(tc.result)
			req := tc.req()
			req.Header.Set("X-Edge-Debug", "1")
			status, eb, resp := s.send(t, req)
			if status != tc.status {
				t.Fatalf("status %d (%+v), want %d", status, eb, tc.status)
			}
			if prefix, ok := strings.CutSuffix(tc.reason, "..."); ok && !strings.HasPrefix(eb.Reason, prefix) || !ok && eb.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", eb.Reason, tc.reason)
			}
			if eb.RoutingKey != "signed" || eb.Error == "" {
				t.Fatalf("body %+v", eb)
			}
			if route := resp.Header.Get("X-Edge-Route"); route != "none: "+eb.Reason {
				t.Fatalf("X-Edge-Route %q", route)
			}
			if n := len(s.up.seen()); n != before {
				t.Fatal("a refused request reached the upstream")
			}
			if got := s.metrics.Auth(tc.result); got != counted+1 {
				t.Fatalf("edgecell_edge_auth_total{result=%q} went %d -> %d", tc.result, counted, got)
			}
		})
	}
}

func TestReplayIsRefused(t *testing.T) {
	s := startAuth(t, nil)
	req := s.signed(t, &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}, "PUT", "signed", "/doc", "v1")
	again := resend(t, req)
	if status, eb, _ := s.send(t, req); status != 200 {
		t.Fatalf("first: %d %+v", status, eb)
	}
	status, eb, _ := s.send(t, again)
	if status != 401 || eb.Reason != "nonce already used" || eb.Error != "unauthorized" {
		t.Fatalf("replay: %d %+v, want 401 nonce already used", status, eb)
	}
	if len(s.up.seen()) != 1 || s.metrics.Auth("replay") != 1 {
		t.Fatalf("upstream got %d requests; replays counted %d", len(s.up.seen()), s.metrics.Auth("replay"))
	}
	// The nonce is kept until the end of the request's timestamp window.
	ts := req.Header.Get("X-Timestamp")
	var sec int64
	fmt.Sscan(ts, &sec)
	if got, want := s.nonces.expiry("k_live", req.Header.Get("X-Nonce")), (sec+60)*1000; got != want {
		t.Fatalf("nonce stored until %d, want timestamp + window = %d", got, want)
	}
}

func TestRotatedSecretsInGraceAreAccepted(t *testing.T) {
	s := startAuth(t, nil)
	for _, secret := range [][]byte{rotatedNew, rotatedGrace} {
		req := s.signed(t, &hmacsig.Signer{KeyID: "k_rotated", Secret: secret}, "GET", "signed", "/x", "")
		if status, eb, _ := s.send(t, req); status != 200 {
			t.Fatalf("secret %q: %d %+v", secret, status, eb)
		}
	}
}

func TestSignedBodiesAreHeldAndForwardedWhole(t *testing.T) {
	readModes(t, func(t *testing.T, mode func(*Config)) {
		s := startAuth(t, mode)
		live := &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}
		for _, tc := range []struct {
			name    string
			cell    string
			size    int
			chunked bool
			expect  bool
		}{
			{"small", "signed", 10, false, false},
			{"at the limit", "signed", maxBody, false, false},
			{"chunked", "signed", 700, true, false},
			{"expect 100-continue", "signed", 900, false, true},
			{"large, sent from memory while the response is read", "signed-big", 300 << 10, false, false},
			{"large and chunked", "signed-big", 100 << 10, true, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				body := strings.Repeat("z", tc.size)
				req := s.signed(t, live, "POST", tc.cell, "/upload", body)
				if tc.chunked {
					req.ContentLength, req.GetBody = -1, nil
					req.Body = io.NopCloser(io.MultiReader(strings.NewReader(body[:300]), strings.NewReader(body[300:])))
				}
				if tc.expect {
					req.Header.Set("Expect", "100-continue")
				}
				if status, eb, _ := s.send(t, req); status != 200 {
					t.Fatalf("status %d %+v", status, eb)
				}
				saw := s.up.seen()
				got := saw[len(saw)-1]
				if got.body != body || got.contentLength != int64(tc.size) || got.chunked || got.expect != "" {
					t.Fatalf("upstream saw %d bytes (Content-Length %d, chunked %v, expect %q); want the %d bytes with their length",
						len(got.body), got.contentLength, got.chunked, got.expect, tc.size)
				}
			})
		}
	})
}

// A held body can be sent again: an idempotent signed request whose first
// endpoint hangs up before answering goes to the next one whole.
func TestHeldBodyIsResentToTheNextEndpoint(t *testing.T) {
	up := startRecorder(t)
	st := authTestState(up.srv.URL, "http://127.0.0.1:1/jwks", "http://127.0.0.1:1/jwks")
	st.Config.Latencies = []*pb.Latency{{From: "us-east", To: "eu-west", OneWayMs: 40}}
	st.Config.Cells = append(st.Config.Cells, &pb.Cell{Id: "flaky", Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC},
		Endpoints: []*pb.Endpoint{{Id: "gone", Url: hangUp(t), Region: "us-east"}, {Id: "there", Url: up.srv.URL, Region: "eu-west"}}})
	st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: "flaky", Cell: "flaky"})
	tb, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, tb, func(c *Config) { c.Nonces = &memNonces{seen: map[string]int64{}} })
	body := strings.Repeat("r", 20<<10)
	req := h.request("PUT", "flaky", "/doc", strings.NewReader(body))
	if err := (&hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}).Sign(req); err != nil {
		t.Fatal(err)
	}
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Edge-Endpoint") != "there@eu-west" {
		t.Fatalf("status %d from %q, want 200 from there@eu-west", resp.StatusCode, resp.Header.Get("X-Edge-Endpoint"))
	}
	if saw := up.seen(); len(saw) != 1 || saw[0].body != body {
		t.Fatalf("upstream saw %d requests (%d bytes)", len(saw), len(saw[0].body))
	}
}

// A body over the limit is refused: before it is read when its
// Content-Length says so, as soon as it grows past the limit when chunked.
// Either way the upstream never sees it and the client gets the 413.
func TestSignedBodyOverTheLimitNeverReachesTheUpstream(t *testing.T) {
	s := startAuth(t, nil)
	live := &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}
	big := strings.Repeat("b", 64<<10)

	// Content-Length over the limit: the answer comes without the body.
	conn := dialRaw(t, s.addr)
	req := s.signed(t, live, "POST", "signed", "/big", big)
	fmt.Fprintf(conn, "POST /big HTTP/1.1\r\nHost: edge\r\nX-Routing-Key: signed\r\nContent-Length: %d\r\n"+
		"X-Key-Id: k_live\r\nX-Timestamp: %s\r\nX-Nonce: %s\r\nX-Signature: %s\r\n\r\n",
		len(big), req.Header.Get("X-Timestamp"), req.Header.Get("X-Nonce"), req.Header.Get("X-Signature"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || !resp.Close {
		t.Fatalf("status %d, close %v; want 413 and the connection closed", resp.StatusCode, resp.Close)
	}

	// Chunked, growing past the limit.
	chunked := s.signed(t, live, "POST", "signed", "/big", big)
	chunked.ContentLength, chunked.GetBody = -1, nil
	chunked.Body = io.NopCloser(strings.NewReader(big))
	status, eb, _ := s.send(t, chunked)
	if status != 413 || eb.Reason != "body over the cell's limit of 1024 bytes" {
		t.Fatalf("chunked: %d %+v", status, eb)
	}
	if n := len(s.up.seen()); n != 0 {
		t.Fatalf("upstream got %d requests", n)
	}
	if n := s.metrics.Auth("too_large"); n != 2 {
		t.Fatalf("too_large counted %d times, want 2", n)
	}
}

// Expect: 100-continue is answered once the checks that need no body have
// passed: a client with an unknown key is refused before it uploads.
func TestContinueOnlyAfterTheKeyPassed(t *testing.T) {
	s := startAuth(t, nil)
	body := "expect me"
	for _, tc := range []struct {
		key    string
		status int
	}{{"k_nobody", 401}, {"k_live", 200}} {
		req := s.signed(t, &hmacsig.Signer{KeyID: tc.key, Secret: liveSecret}, "POST", "signed", "/up", body)
		conn := dialRaw(t, s.addr)
		fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: edge\r\nX-Routing-Key: signed\r\nContent-Length: %d\r\nExpect: 100-continue\r\n"+
			"X-Key-Id: %s\r\nX-Timestamp: %s\r\nX-Nonce: %s\r\nX-Signature: %s\r\n\r\n",
			len(body), tc.key, req.Header.Get("X-Timestamp"), req.Header.Get("X-Nonce"), req.Header.Get("X-Signature"))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.status == 401 {
			if resp.StatusCode != 401 {
				t.Fatalf("%s: first answer %d, want 401 before any body", tc.key, resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != 100 {
			t.Fatalf("%s: first answer %d, want 100 Continue", tc.key, resp.StatusCode)
		}
		io.WriteString(conn, body)
		if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: after the body: %v %v", tc.key, resp, err)
		}
		resp.Body.Close()
	}
	if saw := s.up.seen(); len(saw) != 1 || saw[0].body != body {
		t.Fatalf("upstream saw %+v", saw)
	}
}

func TestNonceStoreUnreachableFailsClosed(t *testing.T) {
	conns := report.NewConns(func() []string { return []string{edgetest.ClosedAddr(t)} }, nil, nil)
	t.Cleanup(conns.Close)
	nc, err := nonce.New(nonce.Config{Edge: "edge-test", Coordinators: conns, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s := startAuth(t, func(c *Config) { c.Nonces = nc })
	req := s.signed(t, &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}, "GET", "signed", "/x", "")
	status, eb, _ := s.send(t, req)
	if status != 503 || eb.Reason != "coordinators unreachable for the nonce check" || eb.Error != "authentication unavailable" {
		t.Fatalf("%d %+v; want 503", status, eb)
	}
	// The unauthenticated cell does not care.
	if status, eb, _ := s.send(t, s.signed(t, nil, "GET", "open", "/x", "")); status != 200 {
		t.Fatalf("open cell: %d %+v", status, eb)
	}
	if len(s.up.seen()) != 1 || s.metrics.Auth("unavailable") != 1 {
		t.Fatal("the signed request reached the upstream, or was not counted unavailable")
	}
}

// What one request was given (an identity, a held body) does not carry
// over to the next on the same connection: after a signed POST, an
// unsigned GET to an open cell reaches its upstream with neither, and an
// unsigned request to the signed cell is refused again.
func TestNothingOfASignedRequestReachesTheNextOnItsConnection(t *testing.T) {
	s := startAuth(t, nil)
	nc := dialRaw(t, s.addr)
	br := bufio.NewReader(nc)
	send := func(req *http.Request) *http.Response {
		t.Helper()
		req.Header.Set("X-Edge-Debug", "1")
		if err := req.Write(nc); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	body := `{"item":"book"}`
	resp := send(s.signed(t, &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}, "POST", "signed", "/orders", body))
	if resp.StatusCode != 200 || !strings.HasSuffix(resp.Header.Get("X-Edge-Route"), "; key k_live") {
		t.Fatalf("signed request: status %d, X-Edge-Route %q", resp.StatusCode, resp.Header.Get("X-Edge-Route"))
	}
	resp = send(s.signed(t, nil, "GET", "open", "/next", ""))
	if resp.StatusCode != 200 || strings.Contains(resp.Header.Get("X-Edge-Route"), "key") {
		t.Fatalf("next request: status %d, X-Edge-Route %q", resp.StatusCode, resp.Header.Get("X-Edge-Route"))
	}
	saw := s.up.seen()
	if len(saw) != 2 || saw[0].body != body || saw[0].keyIDs[0] != "k_live" {
		t.Fatalf("upstream saw %+v", saw)
	}
	if got := saw[1]; got.path != "/prefix/next" || len(got.keyIDs)+len(got.subjects) != 0 || got.body != "" || got.contentLength != 0 {
		t.Fatalf("the next request reached the upstream as %+v; want no identity and no body", got)
	}
	if resp = send(s.signed(t, nil, "POST", "signed", "/orders", body)); resp.StatusCode != 401 {
		t.Fatalf("unsigned request after a signed one: status %d, want 401", resp.StatusCode)
	}
	if resp.Close {
		t.Fatal("the connection should have stayed open throughout")
	}
}

func TestOpenCellIgnoresAuthButDropsForgedIdentity(t *testing.T) {
	s := startAuth(t, nil)
	req := s.signed(t, nil, "GET", "open", "/x", "")
	req.Header.Set("X-Edge-Key-Id", "k_live")
	req.Header.Set("x-edge-subject", "root")
	req.Header.Set("X-Signature", "junk")
	if status, eb, _ := s.send(t, req); status != 200 {
		t.Fatalf("%d %+v", status, eb)
	}
	got := s.up.seen()[0]
	if len(got.keyIDs)+len(got.subjects) != 0 || got.signature != "junk" {
		t.Fatalf("upstream saw identity %q %q, signature %q", got.keyIDs, got.subjects, got.signature)
	}
	for _, r := range authResultNames {
		if s.metrics.Auth(r) != 0 {
			t.Fatalf("auth result %s counted for an open cell", r)
		}
	}
}

func TestBearerTokens(t *testing.T) {
	s := startAuth(t, nil)
	valid := s.iss.token(t, "alice", time.Now().Add(time.Hour))
	bearer := func(key, token string) *http.Request {
		req := s.signed(t, nil, "GET", key, "/me", "")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("X-Edge-Subject", "mallory")
		return req
	}

	status, eb, _ := s.send(t, bearer("tokens", valid))
	if status != 200 {
		t.Fatalf("valid token: %d %+v", status, eb)
	}
	got := s.up.seen()[0]
	if len(got.subjects) != 1 || got.subjects[0] != "alice" || len(got.keyIDs) != 0 || got.authorizationCount != 1 {
		t.Fatalf("upstream saw subject %q key %q (Authorization %d); want alice only, token passed on", got.subjects, got.keyIDs, got.authorizationCount)
	}

	for _, tc := range []struct {
		name, key, token string
		status           int
		reason           string
		challenge        string
	}{
		{"expired", "tokens", s.iss.token(t, "alice", time.Now().Add(-time.Hour)), 401, "bearer token expired", `Bearer error="invalid_token"`},
		{"missing", "tokens", "", 401, "missing bearer token", "Bearer"},
		{"garbage", "tokens", "not.a.token", 401, "invalid bearer token", `Bearer error="invalid_token"`},
		{"key set unreachable", "no-jwks", valid, 503, "issuer key set unavailable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, eb, resp := s.send(t, bearer(tc.key, tc.token))
			if status != tc.status || !strings.HasPrefix(eb.Reason, tc.reason) {
				t.Fatalf("%d %+v; want %d with reason %q...", status, eb, tc.status, tc.reason)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
		})
	}
	if len(s.up.seen()) != 1 {
		t.Fatal("a refused token reached the upstream")
	}
	if s.metrics.Auth("bad_token") != 3 || s.metrics.Auth("unavailable") != 1 {
		t.Fatalf("bad_token %d unavailable %d", s.metrics.Auth("bad_token"), s.metrics.Auth("unavailable"))
	}
}

// HMAC_OR_JWT: a request with X-Signature is checked as signed, any other
// as carrying a token.
func TestEitherModeChoosesByXSignature(t *testing.T) {
	s := startAuth(t, nil)
	signed := s.signed(t, &hmacsig.Signer{KeyID: "k_open_only", Secret: liveSecret}, "GET", "either", "/x", "")
	signed.Header.Set("Authorization", "Bearer junk") // not looked at
	if status, eb, _ := s.send(t, signed); status != 200 {
		t.Fatalf("signed: %d %+v", status, eb)
	}
	tok := s.signed(t, nil, "GET", "either", "/x", "")
	tok.Header.Set("Authorization", "Bearer "+s.iss.token(t, "bob", time.Now().Add(time.Minute)))
	if status, eb, _ := s.send(t, tok); status != 200 {
		t.Fatalf("token: %d %+v", status, eb)
	}
	bad := s.signed(t, &hmacsig.Signer{KeyID: "k_live", Secret: []byte("wrong")}, "GET", "either", "/x", "")
	if status, eb, _ := s.send(t, bad); status != 401 || eb.Reason != "bad signature" {
		t.Fatalf("bad signature with a token cell: %d %+v", status, eb)
	}
	saw := s.up.seen()
	if len(saw) != 2 || saw[0].keyIDs[0] != "k_open_only" || saw[1].subjects[0] != "bob" {
		t.Fatalf("upstream saw %+v", saw)
	}
}
