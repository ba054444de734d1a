package edgenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/cache"
	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
	"google.golang.org/grpc"
)

func backend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return s
}

func stateFor(rev uint64, url string) *pb.State {
	return &pb.State{Revision: rev, Config: &pb.RoutingConfig{
		Cells:      []*pb.Cell{{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "e1", Url: url, Region: "us-east"}}}},
		Placements: []*pb.Placement{{Key: "acme", Cell: "c1"}},
	}}
}

// writeCache leaves a snapshot in dir the way a previous run of the edge would.
func writeCache(t testing.TB, dir string, st *pb.State) {
	t.Helper()
	s, err := cache.Open(filepath.Join(dir, "edge.db"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(cache.Update{Reset: st}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func deadAddr(t testing.TB) string { return edgetest.ClosedAddr(t) }

func start(t testing.TB, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cfg.Name == "" {
		cfg.Name, cfg.Region, cfg.Listen = "edge-1", "us-east", "127.0.0.1:0"
	}
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func get(t testing.TB, url, key string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("X-Routing-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func poll(t testing.TB, what string, cond func() bool) { t.Helper(); testutil.Poll(t, what, cond) }

func TestFailStaticStartServesCachedSnapshotWithEveryCoordinatorDown(t *testing.T) {
	be := backend(t, "b1")
	dir := t.TempDir()
	writeCache(t, dir, stateFor(42, be.URL))
	n := start(t, Config{Name: "edge-1", Region: "us-east", DataDir: dir, Listen: "127.0.0.1:0",
		AdminListen: "127.0.0.1:0", Coordinators: []string{deadAddr(t), deadAddr(t)}})
	if n.Revision() != 42 {
		t.Fatalf("Revision() = %d, want the cached 42", n.Revision())
	}
	code, body, h := get(t, "http://"+n.Addr()+"/hello", "acme")
	if code != 200 || body != "b1 /hello" || h.Get("X-Edge-Endpoint") != "e1@us-east" {
		t.Fatalf("got %d %q %v", code, body, h)
	}
	if code, body, _ := get(t, "http://"+n.AdminAddr()+"/readyz", ""); code != 200 || !strings.Contains(body, "42") {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if n.Coordinator() != "" {
		t.Fatalf("connected to %q with every coordinator down", n.Coordinator())
	}
}

func TestWithoutCacheOrCoordinatorTheEdgeIsNotReady(t *testing.T) {
	n := start(t, Config{Name: "edge-1", Region: "us-east", DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		AdminListen: "127.0.0.1:0", Coordinators: []string{deadAddr(t)}})
	if code, _, _ := get(t, "http://"+n.AdminAddr()+"/readyz", ""); code != 503 {
		t.Fatalf("/readyz: %d, want 503", code)
	}
	if code, body, h := get(t, "http://"+n.Addr()+"/", "acme"); code != 503 || h.Get("X-Edge-Ray") == "" {
		t.Fatalf("proxy without a table: %d %q", code, body)
	}
	if code, _, _ := get(t, "http://"+n.AdminAddr()+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
}

func TestStartRejectsIncompleteConfig(t *testing.T) {
	_, err := Start(context.Background(), Config{Name: "e", Region: "r", Listen: "127.0.0.1:0"})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "DataDir") {
		t.Fatalf("Start without DataDir: %v", err)
	}
}

func TestSecondEdgeOnSameDataDirFails(t *testing.T) {
	dir := t.TempDir()
	start(t, Config{Name: "edge-1", Region: "us-east", DataDir: dir, Listen: "127.0.0.1:0"})
	_, err := Start(context.Background(), Config{Name: "edge-2", Region: "us-east", DataDir: dir, Listen: "127.0.0.1:0"})
	if !errors.Is(err, cache.ErrLocked) {
		t.Fatalf("second Start on the same data dir: %v, want cache.ErrLocked", err)
	}
}

// coordinator is a minimal EdgeService that sends one reset and then progress.
type coordinator struct {
	pb.UnimplementedEdgeServiceServer
	state *pb.State
	mu    sync.Mutex
	acked uint64
}

func (c *coordinator) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.WatchResponse]) error {
	if req.GetFromRevision() < c.state.GetRevision() {
		if err := stream.Send(&pb.WatchResponse{Kind: &pb.WatchResponse_Reset_{Reset_: c.state}}); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

func (c *coordinator) Ack(_ context.Context, req *pb.AckRequest) (*pb.AckResponse, error) {
	c.mu.Lock()
	c.acked = max(c.acked, req.GetAppliedRevision())
	c.mu.Unlock()
	return &pb.AckResponse{}, nil
}

func (c *coordinator) ackedRevision() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

func TestFollowsCoordinatorThenRestartsFromItsCache(t *testing.T) {
	be := backend(t, "b1")
	co := &coordinator{state: stateFor(7, be.URL)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterEdgeServiceServer(gs, co)
	go gs.Serve(ln)
	defer gs.Stop()

	dir := t.TempDir()
	cfg := Config{Name: "edge-1", Region: "us-east", DataDir: dir, Listen: "127.0.0.1:0", Coordinators: []string{ln.Addr().String()}}
	n := start(t, cfg)
	poll(t, "revision 7 applied and acked", func() bool { return n.Revision() == 7 && co.ackedRevision() == 7 })
	if code, body, _ := get(t, "http://"+n.Addr()+"/x", "acme"); code != 200 || body != "b1 /x" {
		t.Fatalf("got %d %q", code, body)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	gs.Stop() // every coordinator gone

	n2 := start(t, cfg)
	if n2.Revision() != 7 {
		t.Fatalf("restarted at revision %d, want 7 from the cache", n2.Revision())
	}
	if code, body, _ := get(t, "http://"+n2.Addr()+"/y", "acme"); code != 200 || body != "b1 /y" {
		t.Fatalf("after restart: %d %q", code, body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	be := backend(t, "b1")
	dir := t.TempDir()
	writeCache(t, dir, stateFor(3, be.URL))
	n := start(t, Config{Name: "edge-1", Region: "us-east", DataDir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"})
	get(t, "http://"+n.Addr()+"/", "acme")
	get(t, "http://"+n.Addr()+"/", "nobody")
	_, body, _ := get(t, "http://"+n.AdminAddr()+"/metrics", "")
	for _, want := range []string{
		`edgecell_edge_requests_total{code="200"} 1`,
		`edgecell_edge_requests_total{code="404"} 1`,
		`edgecell_edge_revision 3`,
		`edgecell_edge_upstream_response_seconds_count 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
