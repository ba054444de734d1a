package server

import (
	"context"
	"sync"
	"testing"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// movingRaft is a member whose state moves between any two reads: every
// View first applies a command that rewrites the cell "moving" (so its
// mod_revision is the new revision), then freezes. A handler that read the
// state twice would answer with content and a revision of two different
// views.
type movingRaft struct {
	member // the methods these tests do not need: calling one panics

	mu    sync.Mutex
	st    *state.Store
	index uint64
	views int
}

func (r *movingRaft) Name() string   { return "c1" }
func (r *movingRaft) IsLeader() bool { return true }

func (r *movingRaft) View() state.View {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	r.views++
	cell := &pb.Cell{Id: "moving", Endpoints: []*pb.Endpoint{{Id: "m1", Url: "http://10.0.0.9:80", Region: "r1", Weight: uint32(r.index%100 + 1)}}}
	var cmd *pb.Command
	if r.index == 1 {
		cmd = &pb.Command{Op: &pb.Command_ApplyConfig{ApplyConfig: &pb.ApplyConfigOp{Config: &pb.RoutingConfig{
			Regions: []*pb.Region{{Name: "r1"}}, Cells: []*pb.Cell{cell}, DefaultCell: "moving",
			Placements: []*pb.Placement{{Key: "t1", Cell: "moving"}},
		}}}}
	} else {
		cmd = &pb.Command{Op: &pb.Command_PutCell{PutCell: &pb.PutCellOp{Cell: cell}}}
	}
	if res, _ := r.st.Apply(r.index, cmd); res.GetError() != nil {
		panic(res.GetError())
	}
	return r.st.Freeze()
}

func (r *movingRaft) viewsTaken() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.views
}

// Every read handler answers from one view: the revision it returns is the
// one its content was read at, although the state moved between any two
// reads.
func TestReadsAnswerFromOneView(t *testing.T) {
	r := &movingRaft{st: state.New()}
	r.View()
	s := New(deps(r), Config{})
	t.Cleanup(s.Close)
	ctx := context.Background()
	stale := pb.Consistency_CONSISTENCY_STALE
	movingAt := func(cells []*pb.Cell) uint64 {
		for _, c := range cells {
			if c.GetId() == "moving" {
				return c.GetModRevision()
			}
		}
		t.Fatal("no cell \"moving\" in the answer")
		return 0
	}
	reads := map[string]func() (content, revision uint64, err error){
		"GetConfig": func() (uint64, uint64, error) {
			resp, err := s.GetConfig(ctx, &pb.GetConfigRequest{Consistency: stale})
			return movingAt(resp.GetConfig().GetCells()), resp.GetRevision(), err
		},
		"GetCell": func() (uint64, uint64, error) {
			resp, err := s.GetCell(ctx, &pb.GetCellRequest{Id: "moving", Consistency: stale})
			return resp.GetCell().GetModRevision(), resp.GetRevision(), err
		},
		"ListCells": func() (uint64, uint64, error) {
			resp, err := s.ListCells(ctx, &pb.ListCellsRequest{Consistency: stale})
			return movingAt(resp.GetCells()), resp.GetRevision(), err
		},
	}
	for name, read := range reads {
		before := r.viewsTaken()
		content, rev, err := read()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if content != rev {
			t.Errorf("%s answered revision %d with content written at %d: two views in one answer", name, rev, content)
		}
		if n := r.viewsTaken() - before; n != 1 {
			t.Errorf("%s took %d views; want one", name, n)
		}
	}
	// Handlers whose content carries no stamp: one view each all the same.
	for name, read := range map[string]func() error{
		"GetPlacement": func() error {
			_, err := s.GetPlacement(ctx, &pb.GetPlacementRequest{Key: "t1", Consistency: stale})
			return err
		},
		"ListPlacements": func() error {
			_, err := s.ListPlacements(ctx, &pb.ListPlacementsRequest{Consistency: stale})
			return err
		},
		"ListBreakers": func() error { _, err := s.ListBreakers(ctx, &pb.ListBreakersRequest{Consistency: stale}); return err },
		"ListHealth":   func() error { _, err := s.ListHealth(ctx, &pb.ListHealthRequest{Consistency: stale}); return err },
		"ListKeys":     func() error { _, err := s.ListKeys(ctx, &pb.ListKeysRequest{Consistency: stale}); return err },
	} {
		before := r.viewsTaken()
		if err := read(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := r.viewsTaken() - before; n != 1 {
			t.Errorf("%s took %d views; want one", name, n)
		}
	}
}

func (r *movingRaft) Read(context.Context, pb.Consistency) (state.View, error) { return r.View(), nil }

// member is every interface of the member a test fake may stand for; a
// fake embeds it (nil) and implements what its test calls, so that calling
// anything else panics.
type member interface {
	Proposer
	Reader
	Membership
}

// deps serves m as the member's Proposer, Reader and Membership (no
// watches).
func deps(m member) Deps { return Deps{Proposer: m, Reader: m, Members: m} }
