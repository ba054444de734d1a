package nonce

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/apierror"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// store is a nonce store with the coordinators' rule: a (key, nonce) is
// fresh for the first check that asks and for retries of that check.
type store struct {
	mu      sync.Mutex
	checkOf map[string]string // key + "\x00" + nonce -> check id that stored it
}

func newStore() *store { return &store{checkOf: map[string]string{}} }

func (s *store) check(checks []*pb.NonceCheck) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bool, len(checks))
	for i, c := range checks {
		k := c.GetKeyId() + "\x00" + c.GetNonce()
		id, ok := s.checkOf[k]
		if !ok {
			s.checkOf[k], id = c.GetCheckId(), c.GetCheckId()
		}
		out[i] = id == c.GetCheckId()
	}
	return out
}

// coordinator is a gRPC EdgeService on loopback whose CheckNonces runs
// handle (by default: answer from its store).
type coordinator struct {
	pb.UnimplementedEdgeServiceServer
	addr   string
	store  *store
	handle func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error)

	mu    sync.Mutex
	calls []*pb.CheckNoncesRequest
}

func startCoordinator(t testing.TB, st *store) *coordinator {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &coordinator{addr: ln.Addr().String(), store: st}
	srv := grpc.NewServer()
	pb.RegisterEdgeServiceServer(srv, c)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return c
}

func (c *coordinator) CheckNonces(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
	c.mu.Lock()
	c.calls = append(c.calls, req)
	h := c.handle
	c.mu.Unlock()
	if h != nil {
		return h(ctx, req)
	}
	return &pb.CheckNoncesResponse{Fresh: c.store.check(req.GetChecks())}, nil
}

func (c *coordinator) received() []*pb.CheckNoncesRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*pb.CheckNoncesRequest(nil), c.calls...)
}

func (c *coordinator) setHandler(h func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error)) {
	c.mu.Lock()
	c.handle = h
	c.mu.Unlock()
}

// coords returns a pool of connections to addrs, preferred in that order.
func coords(t testing.TB, addrs ...string) *coordconn.Pool {
	c := coordconn.New(coordconn.Config{Addrs: func() []string { return addrs }})
	t.Cleanup(c.Close)
	return c
}

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.Edge == "" {
		cfg.Edge = "edge-test"
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (c *Client) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// notLeader is the coordinators' typed refusal, naming leader ("": none).
func notLeader(t testing.TB, leader string) error {
	info := &errdetails.ErrorInfo{Domain: apierror.Domain, Reason: apierror.NotLeader}
	if leader != "" {
		info.Metadata = map[string]string{"leader": leader}
	}
	st, err := status.New(codes.Unavailable, "not the leader").WithDetails(info)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}
