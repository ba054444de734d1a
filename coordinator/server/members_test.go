package server

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// groupRaft is stateRaft (a one-member raft applying to a real state)
// with a raft configuration the membership calls read and change.
type groupRaft struct {
	*stateRaft
	servers []raftstore.Server
	removed []string
}

func (r *groupRaft) Servers() ([]raftstore.Server, error) { return slices.Clone(r.servers), nil }

func (r *groupRaft) RemoveServer(_ context.Context, name string) error {
	r.removed = append(r.removed, name)
	return nil
}

// RemoveMember deletes the member's record only when the view it read has
// one, then takes it out of the raft configuration, and answers with the
// revision of its write, or of that view when there was nothing to write; a
// name outside the configuration is NOT_FOUND and changes nothing.
func TestRemoveMemberAgainstFakes(t *testing.T) {
	r := &groupRaft{
		stateRaft: &stateRaft{st: state.New(), now: t0},
		servers:   []raftstore.Server{{Name: "c1", Voter: true}, {Name: "c2", Voter: true}, {Name: "c3", Voter: true}},
	}
	ctx := context.Background()
	if res, _ := r.Propose(ctx, &pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: &pb.Member{
		Name: "c2", Region: "r1", RaftAddr: "127.0.0.1:7002", GrpcAddr: "127.0.0.1:7102",
	}}}}); res.GetError() != nil {
		t.Fatal(res.GetError())
	}
	s := New(deps(r), Config{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(s.Close)

	resp, err := s.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	v := r.View()
	if _, ok := v.Member("c2"); ok || resp.GetRevision() != v.Revision() || resp.GetRevision() != 2 {
		t.Fatalf("after removing c2: record kept %v, revision %d; want the record deleted at revision 2 (state at %d)", ok, resp.GetRevision(), v.Revision())
	}
	// c3 never registered: nothing to write, the answer is the view's revision.
	resp, err = s.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: "c3"})
	if err != nil || resp.GetRevision() != 2 {
		t.Fatalf("removing unregistered c3: revision %d, %v; want 2 and no error", resp.GetRevision(), err)
	}
	if !slices.Equal(r.removed, []string{"c2", "c3"}) {
		t.Fatalf("raft configuration changes %v; want c2 then c3 removed", r.removed)
	}
	if _, err := s.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: "c9"}); status.Code(err) != codes.NotFound {
		t.Fatalf("removing c9, outside the configuration: %v; want NotFound", err)
	}
	if len(r.removed) != 2 || r.View().Revision() != 2 {
		t.Fatalf("a refused removal changed something: removed %v, revision %d", r.removed, r.View().Revision())
	}
}
