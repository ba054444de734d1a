package edgenode_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/testutil"
)

// nonceLog counts, across all backends, the requests that reached an
// upstream by their X-Nonce, and the X-Edge-Key-Id they came with.
type nonceLog struct {
	mu     sync.Mutex
	count  map[string]int
	keyIDs map[string]string
}

func (l *nonceLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := r.Header.Get("X-Nonce"); n != "" {
			l.mu.Lock()
			l.count[n]++
			l.keyIDs[n] = r.Header.Get("X-Edge-Key-Id")
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *nonceLog) reached(nonce string) (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[nonce], l.keyIDs[nonce]
}

// authFleet is a dev cluster whose cell-signed (an endpoint in every
// region, routing key "signed") requires HMAC signatures, and whose other
// cells are open.
type authFleet struct {
	c     *devcluster.Cluster
	admin pb.AdminServiceClient
	log   *nonceLog
	ctx   context.Context
}

func startAuthFleet(t *testing.T) *authFleet {
	log := &nonceLog{count: map[string]int{}, keyIDs: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	t.Cleanup(cancel)
	c, err := devcluster.Start(ctx, devcluster.Options{
		WrapBackend: func(_ string, h http.Handler) http.Handler { return log.wrap(h) },
		Config: func(bs []devcluster.Backend) *pb.RoutingConfig {
			cfg := devcluster.SampleConfig(bs)
			signed := &pb.Cell{Id: "cell-signed", Auth: &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC}}
			for _, b := range bs {
				if b.ID == b.Region+"-1" {
					signed.Endpoints = append(signed.Endpoints, &pb.Endpoint{Id: b.ID + "-signed", Url: b.URL, Region: b.Region})
				}
			}
			cfg.Cells = append(cfg.Cells, signed)
			cfg.Placements = append(cfg.Placements, &pb.Placement{Key: "signed", Cell: "cell-signed"})
			return cfg
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	admin, err := c.Admin("n1")
	if err != nil {
		t.Fatal(err)
	}
	return &authFleet{c: c, admin: admin, log: log, ctx: ctx}
}

// createKey creates an API key for every cell and waits until every edge
// has it; it returns a signer for it.
func (f *authFleet) createKey(t *testing.T, name string) (*hmacsig.Signer, string) {
	t.Helper()
	resp, err := f.admin.CreateKey(f.ctx, &pb.CreateKeyRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	f.waitEdges(t, resp.GetRevision())
	k := resp.GetKey()
	return &hmacsig.Signer{KeyID: k.GetId(), Secret: []byte(k.GetSecrets()[0].GetSecret())}, k.GetId()
}

// waitEdges waits until every edge serves revision rev or later: the
// receipt of an admin write.
func (f *authFleet) waitEdges(t *testing.T, rev uint64) {
	t.Helper()
	for i, e := range f.c.Edges() {
		testutil.Poll(t, fmt.Sprintf("edge %d at revision %d", i, rev), func() bool { return e.Revision() >= rev })
	}
}

// request is a GET of cell-signed through the edge of region, signed by
// signer unless it is nil.
func (f *authFleet) request(t *testing.T, region string, signer *hmacsig.Signer) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.c.EdgeURL(region)+"/orders?id=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Routing-Key", "signed")
	if signer != nil {
		if err := signer.Sign(req); err != nil {
			t.Fatal(err)
		}
	}
	return req
}

// to is req (signed already, without a body) sent to the edge of region:
// the same request, another host.
func (f *authFleet) to(t *testing.T, region string, req *http.Request) *http.Request {
	t.Helper()
	u, err := url.Parse(f.c.EdgeURL(region))
	if err != nil {
		t.Fatal(err)
	}
	again := req.Clone(context.Background())
	again.URL.Host, again.Host = u.Host, ""
	return again
}

type refusal struct {
	Error, Reason string
}

func send(t *testing.T, req *http.Request) (int, refusal) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r refusal
	if resp.StatusCode != 200 {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("status %d body %q", resp.StatusCode, b)
		}
	}
	return resp.StatusCode, r
}

// Signed requests across a fleet of three edges, one per region, with the
// coordinators' nonce store between them: a request is accepted once
// wherever it is sent, revocation and rotation reach every edge, and with
// every coordinator gone signed requests fail closed while open cells
// keep serving.
func TestSignedRequestsAcrossTheFleet(t *testing.T) {
	f := startAuthFleet(t)
	signer, keyID := f.createKey(t, "fleet")

	t.Run("replay through another region", func(t *testing.T) {
		req := f.request(t, "us-east", signer)
		if status, r := send(t, req); status != 200 {
			t.Fatalf("us-east: %d %+v", status, r)
		}
		status, r := send(t, f.to(t, "eu-west", req))
		if status != 401 || r.Reason != "nonce already used" {
			t.Fatalf("the same request through eu-west: %d %+v, want 401 nonce already used", status, r)
		}
		if n, id := f.log.reached(req.Header.Get("X-Nonce")); n != 1 || id != keyID {
			t.Fatalf("upstreams got the request %d times (X-Edge-Key-Id %q), want once with %q", n, id, keyID)
		}
	})

	t.Run("50 racing copies through three edges", func(t *testing.T) {
		req := f.request(t, "us-east", signer)
		regions := devcluster.Regions()
		statuses := make([]int, 50)
		reasons := make([]string, 50)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() {
				st, r := send(t, f.to(t, regions[i%len(regions)], req))
				statuses[i], reasons[i] = st, r.Reason
			})
		}
		wg.Wait()
		ok := 0
		for i, st := range statuses {
			switch {
			case st == 200:
				ok++
			case st != 401 || reasons[i] != "nonce already used":
				t.Errorf("copy %d: %d %q, want 200 or 401 nonce already used", i, st, reasons[i])
			}
		}
		if n, _ := f.log.reached(req.Header.Get("X-Nonce")); ok != 1 || n != 1 {
			t.Fatalf("%d copies accepted, upstreams saw %d; want exactly one", ok, n)
		}
	})

	t.Run("revocation reaches every edge", func(t *testing.T) {
		doomed, id := f.createKey(t, "doomed")
		for _, region := range devcluster.Regions() {
			if status, r := send(t, f.request(t, region, doomed)); status != 200 {
				t.Fatalf("%s before revocation: %d %+v", region, status, r)
			}
		}
		resp, err := f.admin.RevokeKey(f.ctx, &pb.RevokeKeyRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		f.waitEdges(t, resp.GetRevision())
		for _, region := range devcluster.Regions() {
			if status, r := send(t, f.request(t, region, doomed)); status != 401 || r.Reason != "key revoked" {
				t.Fatalf("%s after revocation: %d %+v, want 401 key revoked", region, status, r)
			}
		}
	})

	t.Run("rotation with and without grace", func(t *testing.T) {
		first, id := f.createKey(t, "rotating")
		rot, err := f.admin.RotateKey(f.ctx, &pb.RotateKeyRequest{Id: id, GraceSeconds: 300})
		if err != nil {
			t.Fatal(err)
		}
		f.waitEdges(t, rot.GetRevision())
		second := &hmacsig.Signer{KeyID: id, Secret: []byte(rot.GetKey().GetSecrets()[0].GetSecret())}
		for _, region := range devcluster.Regions() {
			for name, s := range map[string]*hmacsig.Signer{"old": first, "new": second} {
				if status, r := send(t, f.request(t, region, s)); status != 200 {
					t.Fatalf("%s, %s secret in its grace: %d %+v", region, name, status, r)
				}
			}
		}
		rot, err = f.admin.RotateKey(f.ctx, &pb.RotateKeyRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		f.waitEdges(t, rot.GetRevision())
		third := &hmacsig.Signer{KeyID: id, Secret: []byte(rot.GetKey().GetSecrets()[0].GetSecret())}
		for _, region := range devcluster.Regions() {
			for name, s := range map[string]*hmacsig.Signer{"first": first, "second": second} {
				if status, r := send(t, f.request(t, region, s)); status != 401 || r.Reason != "bad signature" {
					t.Fatalf("%s, %s secret after a rotation without grace: %d %+v, want 401 bad signature", region, name, status, r)
				}
			}
			if status, r := send(t, f.request(t, region, third)); status != 200 {
				t.Fatalf("%s, newest secret: %d %+v", region, status, r)
			}
		}
	})

	t.Run("coordinators gone: fail closed", func(t *testing.T) {
		for _, m := range f.c.Members() {
			if err := f.c.KillCoordinator(m.Name); err != nil {
				t.Fatal(err)
			}
		}
		for _, region := range devcluster.Regions() {
			req := f.request(t, region, signer)
			start := time.Now()
			status, r := send(t, req)
			if status != 503 || r.Reason != "coordinators unreachable for the nonce check" {
				t.Fatalf("%s: signed request with no coordinator: %d %+v, want 503", region, status, r)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("%s: the 503 took %s", region, took)
			}
			if n, _ := f.log.reached(req.Header.Get("X-Nonce")); n != 0 {
				t.Fatalf("%s: a request refused for want of a nonce check reached an upstream", region)
			}
			open, _ := http.NewRequest(http.MethodGet, f.c.EdgeURL(region)+"/", nil)
			open.Header.Set("X-Routing-Key", "tenant-1")
			if status, r := send(t, open); status != 200 {
				t.Fatalf("%s: open cell from the snapshot: %d %+v", region, status, r)
			}
		}
	})
}
