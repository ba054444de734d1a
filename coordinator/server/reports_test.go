package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

// reportRaft is stateRaft that counts the report entries proposed, holds
// the first one until gate closes (so that the others queue behind it), and
// with legacy refuses ReportBatchOp as a member on an older binary would.
type reportRaft struct {
	*stateRaft
	legacy bool
	gate   chan struct{}
	held   sync.Once

	mu               sync.Mutex
	batches, singles int
	reportsInBatches int
	entered          chan struct{}
}

func (r *reportRaft) Propose(ctx context.Context, cmd *pb.Command) (*pb.CommandResult, error) {
	rb, single := cmd.GetReportBatch(), cmd.GetReportOutcomes() != nil
	if rb != nil || single {
		r.held.Do(func() { r.entered <- struct{}{}; <-r.gate })
	}
	if rb != nil && r.legacy {
		return nil, &raftstore.OpUnsupportedError{Op: state.OpOf(cmd), Members: []string{"c2"}}
	}
	r.mu.Lock()
	if rb != nil {
		r.batches++
		r.reportsInBatches += len(rb.GetOutcomes()) + len(rb.GetHealth())
	} else if single {
		r.singles++
	}
	r.mu.Unlock()
	return r.stateRaft.Propose(ctx, cmd)
}

// reportServer is a server over a state with one cell of two endpoints.
func reportServer(t *testing.T, legacy bool) (*Server, *reportRaft) {
	t.Helper()
	r := &reportRaft{stateRaft: &stateRaft{st: state.New(), now: t0}, legacy: legacy, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	cfg := &pb.RoutingConfig{Regions: []*pb.Region{{Name: "us-east"}}, Cells: []*pb.Cell{{Id: "c1", Endpoints: []*pb.Endpoint{
		{Id: "e1", Url: "http://10.0.0.1", Region: "us-east"}, {Id: "e2", Url: "http://10.0.0.2", Region: "us-east"}}}}}
	if res, _ := r.stateRaft.Propose(context.Background(), &pb.Command{Op: &pb.Command_ApplyConfig{ApplyConfig: &pb.ApplyConfigOp{Config: cfg}}}); res.GetError() != nil {
		t.Fatal(res.GetError())
	}
	s := New(Deps{Proposer: r, Reader: r, Members: r}, Config{})
	s.reports.proposers = 1 // the others queue behind the one held
	t.Cleanup(s.Close)
	return s, r
}

// sendReports sends n edges' outcome reports at once, the last naming an
// endpoint the config does not have: the first is held in Propose until
// the others all wait for the batcher's one proposer.
func sendReports(t *testing.T, s *Server, r *reportRaft, n int) []error {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	report := func(i int) {
		defer wg.Done()
		ep := "e1"
		if i == n-1 {
			ep = "gone"
		}
		_, errs[i] = s.ReportOutcomes(context.Background(), &pb.ReportOutcomesRequest{Edge: fmt.Sprintf("edge-%d", i), BatchId: 1,
			Outcomes: []*pb.EndpointOutcomes{{Endpoint: ep, Successes: 3}}})
	}
	wg.Add(1)
	go report(0)
	<-r.entered // the first report's entry is being proposed
	for i := 1; i < n; i++ {
		wg.Add(1)
		go report(i)
	}
	testutil.Eventually(t, 10*time.Second, func() error { // all queued behind it
		if q := len(s.reports.calls); q < n-1 {
			return fmt.Errorf("%d of %d reports queued", q, n-1)
		}
		return nil
	})
	close(r.gate)
	wg.Wait()
	return errs
}

// expectAnswers checks sendReports' answers: all applied but the last,
// NOT_FOUND.
func expectAnswers(t *testing.T, errs []error) {
	t.Helper()
	n := len(errs)
	for i, err := range errs[:n-1] {
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	if status.Code(errs[n-1]) != codes.NotFound {
		t.Errorf("the report naming an unknown endpoint: %v, want NOT_FOUND", errs[n-1])
	}
}

// TestReportsShareRaftEntries: reports arriving together are committed in
// a few ReportBatchOps, not an entry each, and each gets its own answer.
func TestReportsShareRaftEntries(t *testing.T) {
	s, r := reportServer(t, false)
	const n = 200
	expectAnswers(t, sendReports(t, s, r, n))
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("%d reports: %d entries (%d batches carrying %d reports, %d single)", n, r.batches+r.singles, r.batches, r.reportsInBatches, r.singles)
	if entries := r.batches + r.singles; entries > 10 || r.reportsInBatches < n-10 {
		t.Errorf("%d reports took %d entries (%d batches carrying %d reports, %d single)", n, entries, r.batches, r.reportsInBatches, r.singles)
	}
}

// TestReportsWithoutBatchesOnOlderMembers: while a member's binary does not
// apply ReportBatchOp, every report still commits, as its own entry.
func TestReportsWithoutBatchesOnOlderMembers(t *testing.T) {
	s, r := reportServer(t, true)
	const n = 50
	expectAnswers(t, sendReports(t, s, r, n))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.singles != n || r.batches != 0 {
		t.Errorf("%d single entries and %d batches, want %d and 0", r.singles, r.batches, n)
	}
}
