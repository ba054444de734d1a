package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecell/edgecell/hmacsig"
)

const testSecret = "s3cret"

// received is a request the signing server verified.
type received struct {
	method, target, routingKey string
	header                     http.Header
	body                       string
}

// signingServer is an edge stand-in: it verifies every request's signature
// with package hmacsig and the key k1 = testSecret, answers 401 with the
// refusal when it fails, and otherwise hands the request to reply.
type signingServer struct {
	*httptest.Server
	mu       sync.Mutex
	verified []received
	requests int
}

func startSigningServer(t *testing.T, reply http.HandlerFunc) *signingServer {
	t.Helper()
	s := &signingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.Header.Get(hmacsig.HeaderKeyID) != "k1" {
			http.Error(w, "unknown key", http.StatusUnauthorized)
			return
		}
		if err := hmacsig.NewVerifier().Check(hmacsig.FromHTTP(r, body), []byte(testSecret), time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		s.verified = append(s.verified, received{r.Method, r.RequestURI, r.Header.Get(hmacsig.HeaderRoutingKey), r.Header, string(body)})
		s.mu.Unlock()
		reply(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *signingServer) received() ([]received, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.verified...), s.requests
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Reply", "yes")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// requestCLI runs `edgecell request` in-process with the given environment.
func requestCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"request"}, args...),
		streams{in: strings.NewReader(stdin), out: &out, err: &errb}, func(k string) string { return env[k] })
	return result{out.String(), errb.String(), code}
}

func TestRequestSignsSendsAndPrintsTheBody(t *testing.T) {
	srv := startSigningServer(t, answer(http.StatusCreated, `{"id":7}`))
	r := requestCLI(t, nil, "", "--key-id", "k1", "--secret", testSecret, "--routing-key", "tenant-1",
		"-d", `{"item":"book"}`, "-H", "Content-Type: application/json", "-H", "X-Trace:  abc ",
		srv.URL+"/v1/orders?region=eu-west&id=42")
	if r.code != 0 || r.out != `{"id":7}` || r.err != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the response body", r.code, r.out, r.err)
	}
	got, _ := srv.received()
	if len(got) != 1 {
		t.Fatalf("server verified %d requests, want 1", len(got))
	}
	g := got[0]
	if g.method != "POST" || g.target != "/v1/orders?region=eu-west&id=42" || g.routingKey != "tenant-1" || g.body != `{"item":"book"}` {
		t.Errorf("server received %s %s key %q body %q", g.method, g.target, g.routingKey, g.body)
	}
	if ct, tr := g.header.Get("Content-Type"), g.header.Get("X-Trace"); ct != "application/json" || tr != "abc" {
		t.Errorf("-H headers arrived as Content-Type %q, X-Trace %q", ct, tr)
	}
}

func TestRequestMethods(t *testing.T) {
	srv := startSigningServer(t, answer(http.StatusOK, "ok"))
	tests := []struct {
		name       string
		args       []string
		wantMethod string
		wantBody   string
	}{
		{"no body is GET", nil, "GET", ""},
		{"a body is POST", []string{"-d", "x=1"}, "POST", "x=1"},
		{"an empty body is POST", []string{"-d", ""}, "POST", ""},
		{"-X without body", []string{"-X", "DELETE"}, "DELETE", ""},
		{"-X with body", []string{"--request", "PUT", "-d", "v"}, "PUT", "v"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--key-id", "k1", "--secret", testSecret, srv.URL + "/m"}, tt.args...)
			if r := requestCLI(t, nil, "", args...); r.code != 0 || r.out != "ok" {
				t.Fatalf("%+v", r)
			}
			got, _ := srv.received()
			if g := got[i]; g.method != tt.wantMethod || g.body != tt.wantBody {
				t.Errorf("server received %s with body %q, want %s with %q", g.method, g.body, tt.wantMethod, tt.wantBody)
			}
		})
	}
}

func TestRequestIncludePrintsStatusAndHeaders(t *testing.T) {
	srv := startSigningServer(t, answer(http.StatusCreated, "made"))
	r := requestCLI(t, nil, "", "-i", "--key-id", "k1", "--secret", testSecret, srv.URL)
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	head, body, ok := strings.Cut(r.out, "\r\n\r\n")
	if !ok || body != "made" {
		t.Fatalf("stdout %q: want head, blank line, body", r.out)
	}
	if !strings.HasPrefix(head, "HTTP/1.1 201 Created\r\n") || !strings.Contains(head, "\r\nX-Reply: yes") {
		t.Errorf("head %q lacks the status line or X-Reply", head)
	}
}

func TestRequestSecretFromEnvironment(t *testing.T) {
	srv := startSigningServer(t, answer(http.StatusOK, "ok"))
	if r := requestCLI(t, map[string]string{secretEnv: testSecret}, "", "--key-id", "k1", srv.URL); r.code != 0 || r.out != "ok" {
		t.Errorf("secret from $%s: %+v", secretEnv, r)
	}
	r := requestCLI(t, map[string]string{secretEnv: testSecret}, "", "--key-id", "k1", "--secret", "wrong", srv.URL)
	if r.code != 0 || !strings.Contains(r.out, "X-Signature: bad signature") {
		t.Errorf("--secret must win over $%s: %+v", secretEnv, r)
	}
}

// TestRequestExitsZeroOnAnyHTTPStatus: like curl, a refusal is an answer.
func TestRequestExitsZeroOnAnyHTTPStatus(t *testing.T) {
	srv := startSigningServer(t, answer(http.StatusServiceUnavailable, "busy"))
	r := requestCLI(t, nil, "", "--key-id", "k1", "--secret", "not-the-secret", srv.URL)
	if r.code != 0 || !strings.Contains(r.out, "X-Signature: bad signature") || r.err != "" {
		t.Errorf("wrong secret: %+v; want exit 0 with the server's 401 body", r)
	}
	r = requestCLI(t, nil, "", "-i", "--key-id", "k1", "--secret", testSecret, srv.URL)
	if r.code != 0 || !strings.HasPrefix(r.out, "HTTP/1.1 503 Service Unavailable\r\n") || !strings.HasSuffix(r.out, "busy") {
		t.Errorf("503: %+v", r)
	}
}

func TestRequestBodyFromFileAndStdin(t *testing.T) {
	srv := startSigningServer(t, answer(http.StatusOK, "ok"))
	file := filepath.Join(t.TempDir(), "body.bin")
	if err := os.WriteFile(file, []byte("from\x00file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := requestCLI(t, nil, "", "--key-id", "k1", "--secret", testSecret, "--data-file", file, srv.URL); r.code != 0 {
		t.Fatalf("--data-file: %+v", r)
	}
	if r := requestCLI(t, nil, "from stdin", "--key-id", "k1", "--secret", testSecret, "--data-file", "-", "-X", "PUT", srv.URL); r.code != 0 {
		t.Fatalf("--data-file -: %+v", r)
	}
	got, _ := srv.received()
	if len(got) != 2 || got[0].body != "from\x00file\n" || got[0].method != "POST" || got[1].body != "from stdin" || got[1].method != "PUT" {
		t.Errorf("server received %+v", got)
	}
}

func TestRequestDoesNotFollowRedirects(t *testing.T) {
	srv := startSigningServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	r := requestCLI(t, nil, "", "-i", "--key-id", "k1", "--secret", testSecret, srv.URL+"/here")
	if r.code != 0 || !strings.HasPrefix(r.out, "HTTP/1.1 302 Found\r\n") || !strings.Contains(r.out, "Location: /elsewhere\r\n") {
		t.Errorf("%+v; want the 302 printed", r)
	}
	if _, n := srv.received(); n != 1 {
		t.Errorf("server got %d requests, want 1: the redirect was followed", n)
	}
}

func TestRequestTransportErrorExits1(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + lis.Addr().String() + "/x"
	lis.Close()
	r := requestCLI(t, nil, "", "--key-id", "k1", "--secret", testSecret, dead)
	if r.code != 1 || !strings.HasPrefix(r.err, "edgecell: GET "+dead+": ") || !strings.Contains(r.err, "refused") || r.out != "" {
		t.Errorf("%+v; want exit 1 naming the request and the refused connection", r)
	}
}

func TestRequestTimeoutExits1(t *testing.T) {
	release := make(chan struct{})
	srv := startSigningServer(t, func(http.ResponseWriter, *http.Request) { <-release })
	defer close(release) // before srv.Close, which waits for the handler
	r := requestCLI(t, nil, "", "--timeout", "200ms", "--key-id", "k1", "--secret", testSecret, srv.URL)
	if r.code != 1 || !strings.Contains(r.err, "no response within 200ms (raise --timeout?)") {
		t.Errorf("%+v; want exit 1 saying the timeout passed", r)
	}
}

func TestRequestUsageErrorsExit2WithoutSending(t *testing.T) {
	srv := startSigningServer(t, answer(http.StatusOK, "ok"))
	key := []string{"--key-id", "k1", "--secret", testSecret}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no URL", key, "takes 1 argument(s): [URL]"},
		{"two URLs", append(key, srv.URL, srv.URL), "takes 1 argument(s): [URL]"},
		{"no key id", []string{"--secret", testSecret, srv.URL}, `"key-id" not set`},
		{"no secret", []string{"--key-id", "k1", srv.URL}, "no secret: give --secret or set $EDGECELL_SECRET"},
		{"URL without scheme", append(key, "127.0.0.1:8080/x"), `URL "127.0.0.1:8080/x"`},
		{"URL with another scheme", append(key, "ftp://h/x"), "want http://HOST[:PORT]/PATH"},
		{"body twice", append(key, "-d", "a", "--data-file", "f", srv.URL), "[data data-file] were all set"},
		{"missing body file", append(key, "--data-file", "/does/not/exist", srv.URL), "--data-file: open /does/not/exist"},
		{"bad method", append(key, "-X", "GE T", srv.URL), `-X "GE T": not an HTTP method`},
		{"empty method", append(key, "-X", "", srv.URL), "-X is empty"},
		{"header without colon", append(key, "-H", "Accept", srv.URL), `-H "Accept": want 'Name: value'`},
		{"header with bad name", append(key, "-H", "Bad Name: v", srv.URL), `-H "Bad Name: v"`},
		{"signature header", append(key, "-H", "x-signature: 00", srv.URL), "X-Signature is set by the signature"},
		{"routing key twice", append(key, "-H", "X-Routing-Key: a", "--routing-key", "b", srv.URL), "both --routing-key and -H X-Routing-Key"},
		{"two routing key headers", append(key, "-H", "X-Routing-Key: a", "-H", "X-Routing-Key: b", srv.URL), "X-Routing-Key: 2 values"},
		{"key id with a newline", []string{"--key-id", "k1\nX: y", "--secret", testSecret, srv.URL}, "Signer.KeyID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := requestCLI(t, nil, "", tt.args...)
			if r.code != 2 || !strings.HasPrefix(r.err, "edgecell: ") || !strings.Contains(r.err, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.err, tt.want)
			}
		})
	}
	if _, n := srv.received(); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
}
