package hmacsig

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// verifyingServer is a net/http server that checks every request's
// signature against secret and answers 200 with the body it received, or
// 401 with the refusal.
func verifyingServer(t *testing.T, secret []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := NewVerifier().Check(FromHTTP(r, body), secret, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSignedRequestsVerifyOverHTTP(t *testing.T) {
	secret := []byte("over-the-wire")
	srv := verifyingServer(t, secret)
	tests := []struct {
		name       string
		method     string
		path       string
		body       func() io.Reader // nil: no body
		want       string
		routingKey string
	}{
		{name: "GET without body", method: "GET", path: "/v1/orders"},
		{name: "empty method means GET", method: "", path: "/"},
		{name: "POST with a sized body", method: "POST", path: "/v1/orders?id=42",
			body: func() io.Reader { return strings.NewReader(`{"qty":1}`) }, want: `{"qty":1}`},
		{name: "POST with a body of unknown length", method: "POST", path: "/upload",
			body: func() io.Reader { return io.MultiReader(strings.NewReader("part 1, "), strings.NewReader("part 2")) }, want: "part 1, part 2"},
		{name: "PUT with an empty body of unknown length", method: "PUT", path: "/empty",
			body: func() io.Reader { return io.MultiReader() }},
		{name: "escaped path, repeated query keys", method: "DELETE", path: "/a%20b/c%2Fd?x=2&x=1&q=%E2%9C%93"},
		{name: "dot segments, signed as normalised", method: "GET", path: "/a/./b/%2e%2E/c?q=../x"},
		{name: "routing key with surrounding spaces", method: "PATCH", path: "/r",
			body: func() io.Reader { return bytes.NewReader([]byte{0, 1, 2}) }, want: "\x00\x01\x02", routingKey: "  tenant-1 \t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != nil {
				body = tt.body()
			}
			req := newRequest(t, tt.method, srv.URL+tt.path, body)
			if tt.routingKey != "" {
				req.Header.Set(HeaderRoutingKey, tt.routingKey)
			}
			s := &Signer{KeyID: "k1", Secret: secret}
			if err := s.Sign(req); err != nil {
				t.Fatal(err)
			}
			if req.GetBody == nil && req.Body != nil && req.Body != http.NoBody {
				t.Fatal("Sign left a body that cannot be read again")
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(got) != tt.want {
				t.Fatalf("server answered %s %q, want 200 %q", resp.Status, got, tt.want)
			}
			if req.GetBody != nil { // a redirect or a retry sends the same body again
				again, err := req.GetBody()
				if err != nil {
					t.Fatal(err)
				}
				if b, _ := io.ReadAll(again); string(b) != tt.want {
					t.Errorf("GetBody after sending gives %q, want %q", b, tt.want)
				}
			}
		})
	}
}

func TestSignedRequestChangedAfterSigningIsRefused(t *testing.T) {
	secret := []byte("over-the-wire")
	srv := verifyingServer(t, secret)
	req := newRequest(t, "GET", srv.URL+"/v1/orders", nil)
	if err := (&Signer{KeyID: "k1", Secret: secret}).Sign(req); err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = "admin=1"
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(got), "X-Signature: bad signature") {
		t.Fatalf("server answered %s %q, want 401 naming X-Signature", resp.Status, got)
	}
}

func TestSignReplacesAnEarlierSignature(t *testing.T) {
	req := newRequest(t, "GET", "http://edge.example/", nil)
	nonces := []string{"first", "second"}
	s := &Signer{KeyID: "k1", Secret: []byte("s"), Nonce: func() string {
		n := nonces[0]
		nonces = nonces[1:]
		return n
	}}
	for range 2 {
		if err := s.Sign(req); err != nil {
			t.Fatal(err)
		}
	}
	if got := req.Header.Values(HeaderNonce); len(got) != 1 || got[0] != "second" {
		t.Errorf("X-Nonce after signing twice = %q, want [second]", got)
	}
	if got := req.Header.Values(HeaderSignature); len(got) != 1 {
		t.Errorf("X-Signature after signing twice = %q, want one value", got)
	}
}

func TestSignRefusesWithoutTouchingTheRequest(t *testing.T) {
	good := Signer{KeyID: "k1", Secret: []byte("s")}
	readErr := errors.New("disk on fire")
	tests := []struct {
		name    string
		signer  func(s *Signer)
		request func(r *http.Request)
		want    string
	}{
		{name: "no key id", signer: func(s *Signer) { s.KeyID = "" }, want: "Signer.KeyID is empty"},
		{name: "key id with a newline", signer: func(s *Signer) { s.KeyID = "k1\r\nX-Admin: 1" }, want: "Signer.KeyID"},
		{name: "no secret", signer: func(s *Signer) { s.Secret = nil }, want: "Signer.Secret is empty"},
		{name: "bad nonce", signer: func(s *Signer) { s.Nonce = func() string { return "a b" } }, want: `Signer.Nonce: X-Nonce: malformed nonce`},
		{name: "nonce too long", signer: func(s *Signer) { s.Nonce = func() string { return strings.Repeat("n", 129) } }, want: "129 characters"},
		{name: "two routing keys", request: func(r *http.Request) {
			r.Header.Add(HeaderRoutingKey, "a")
			r.Header.Add(HeaderRoutingKey, "b")
		}, want: "X-Routing-Key: 2 values"},
		{name: "routing key with a newline", request: func(r *http.Request) { r.Header.Set(HeaderRoutingKey, "a\nb") }, want: "X-Routing-Key"},
		{name: "unreadable body", request: func(r *http.Request) {
			r.Body = io.NopCloser(iotest.ErrReader(readErr))
		}, want: "read the request body: disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			if tt.signer != nil {
				tt.signer(&s)
			}
			req := newRequest(t, "POST", "http://edge.example/", strings.NewReader("body"))
			if tt.request != nil {
				tt.request(req)
			}
			err := s.Sign(req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Sign = %v, want an error saying %q", err, tt.want)
			}
			for _, h := range []string{HeaderKeyID, HeaderTimestamp, HeaderNonce, HeaderSignature} {
				if v := req.Header.Get(h); v != "" {
					t.Errorf("failed Sign set %s: %q", h, v)
				}
			}
		})
	}
}

func TestSignWithoutBodySignsTheEmptyHash(t *testing.T) {
	req := newRequest(t, "GET", "http://edge.example/x", nil)
	req.Header = nil
	s := &Signer{KeyID: "k1", Secret: []byte("s"), Now: func() time.Time { return time.Unix(1700000000, 0) },
		Nonce: func() string { return "n" }}
	if err := s.Sign(req); err != nil {
		t.Fatal(err)
	}
	canon := "GET\n/x\n\n1700000000\nn\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if got, want := req.Header.Get(HeaderSignature), Signature([]byte("s"), []byte(canon)); got != want {
		t.Errorf("X-Signature = %s, want %s (the signature of %q)", got, want, canon)
	}
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestNormalizeTarget(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "": unchanged
		err      error
	}{
		{"/v1/orders?id=1", "", nil},
		{"*", "", nil},
		{"/a/./b", "/a/b", nil},
		{"/a/b/..", "/a/", nil},
		{"/a/%2e%2E/b?x=../y", "/b?x=../y", nil},
		{"/..", "", ErrClimbsAboveRoot},
		{"/a/..%2f..%2fetc", "", ErrEncodedSlashDots},
		{"/a/..b/c.", "", nil},
	} {
		out, changed, err := NormalizeTarget([]byte("prefix:"), []byte(tc.in))
		got := ""
		if changed {
			got = strings.TrimPrefix(string(out), "prefix:")
		}
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%q: %q changed=%v %v, want %q %v", tc.in, got, changed, err, tc.want, tc.err)
		}
	}
	if err := (&Signer{KeyID: "k", Secret: []byte("s")}).Sign(newRequest(t, "GET", "http://edge/../etc", nil)); !errors.Is(err, ErrClimbsAboveRoot) {
		t.Errorf("signing a path above the root: %v", err)
	}
}
