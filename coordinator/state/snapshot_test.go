package state

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// raftLog is a hand-built log as raft would replay it: successes, no-ops and
// refusals, with gaps in the indexes (entries that are not commands).
func raftLog() []struct {
	index uint64
	cmd   *pb.Command
} {
	moved := baseConfig()
	moved.Placements[0].Cell = "spare"
	moved.Regions = append(moved.Regions, &pb.Region{Name: "sa-east"})
	stale := putPlacementCmd("tenant-x", "c1")
	stale.ExpectRevision = 3
	return []struct {
		index uint64
		cmd   *pb.Command
	}{
		{3, putMemberCmd(member("n1", "us-east"))},
		{4, putMemberCmd(member("n2", "eu-west"))},
		{5, applyConfigCmd(baseConfig())},
		{7, putPlacementCmd("tenant-c", "c2")},
		{8, putPlacementCmd("tenant-c", "c2")}, // no-op
		{9, stale},                             // refused: revision mismatch
		{10, deleteCellCmd("c1")},              // refused: in use
		{11, putCellCmd(&pb.Cell{Id: "c5", Endpoints: []*pb.Endpoint{{Id: "c5-e", Url: "http://c5", Region: "eu-west"}}})},
		{12, putPlacementCmd("tenant-d", "c5")},
		{14, applyConfigCmd(moved)},
		{15, deletePlacementCmd("tenant-b")},
		{16, deleteMemberCmd("n2")},
		{17, putPlacementCmd("bad key", "c1")}, // refused: invalid
		{18, putCellCmd(&pb.Cell{Id: "c6"})},
		{19, deleteCellCmd("c6")},
	}
}

func TestReplayIsDeterministic(t *testing.T) {
	a, b := New(), New()
	log := raftLog()
	for _, e := range log {
		ra, ca := applyAndFollow(t, a, e.index, e.cmd)
		rb, cb := b.Apply(e.index, e.cmd)
		if !proto.Equal(ra, rb) || !proto.Equal(ca, cb) {
			t.Fatalf("index %d: replicas disagree:\n%v %v\n%v %v", e.index, ra, ca, rb, cb)
		}
	}
	if !proto.Equal(a.Freeze().State(), b.Freeze().State()) {
		t.Fatalf("replicas diverged:\n%v\n%v", a.Freeze().State(), b.Freeze().State())
	}
	if a.Freeze().Revision() != 19 {
		t.Fatalf("revision %d; want 19", a.Freeze().Revision())
	}

	// A replica restored from a snapshot in the middle of the log, then fed
	// the rest, ends in the same state.
	c := New()
	for _, e := range log[:6] {
		c.Apply(e.index, e.cmd)
	}
	restored, err := FromState(c.Freeze().State())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range log[6:] {
		restored.Apply(e.index, e.cmd)
	}
	if !proto.Equal(a.Freeze().State(), restored.Freeze().State()) {
		t.Fatalf("restored replica diverged:\n%v\n%v", a.Freeze().State(), restored.Freeze().State())
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := New()
	for _, e := range raftLog()[:12] {
		s.Apply(e.index, e.cmd)
	}
	snap := s.Freeze().State()
	wire, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	decoded := &pb.State{}
	if err := proto.Unmarshal(wire, decoded); err != nil {
		t.Fatal(err)
	}
	r, err := FromState(decoded)
	if err != nil {
		t.Fatal(err)
	}
	if r.Freeze().Revision() != s.Freeze().Revision() || !proto.Equal(r.Freeze().State(), snap) {
		t.Fatalf("round trip differs:\n%v\n%v", r.Freeze().State(), snap)
	}
	cfgA, revA := s.Freeze().Config(), s.Freeze().Revision()
	cfgB, revB := r.Freeze().Config(), r.Freeze().Revision()
	if revA != revB || !proto.Equal(cfgA, cfgB) || !proto.Equal(&pb.State{Members: s.Freeze().Members()}, &pb.State{Members: r.Freeze().Members()}) {
		t.Fatal("reads differ after the round trip")
	}
	// Both stores react the same way to what comes next, stamps included.
	for i, cmd := range []*pb.Command{
		putCellCmd(&pb.Cell{Id: "c1"}), // update: keeps create_revision
		putCellCmd(&pb.Cell{Id: "c2-dup", Endpoints: []*pb.Endpoint{{Id: "c2-aps", Url: "http://h", Region: "us-east"}}}), // refused: endpoint owned
		deleteCellCmd("spare"), // refused: used by tenant-a
		applyConfigCmd(baseConfig()),
	} {
		ra, ca := s.Apply(uint64(100+i), cmd)
		rb, cb := r.Apply(uint64(100+i), cmd)
		if !proto.Equal(ra, rb) || !proto.Equal(ca, cb) {
			t.Fatalf("command %d: original %v %v, restored %v %v", i, ra, ca, rb, cb)
		}
	}
	if !proto.Equal(s.Freeze().State(), r.Freeze().State()) {
		t.Fatal("stores diverged after the round trip")
	}

	// The snapshot is a copy: editing it does not touch the store.
	snap.Config.Cells[0].Id = "edited"
	snap.Members[0].Name = "edited"
	if c, ok := s.Freeze().Cell("c1"); !ok || c.GetId() != "c1" {
		t.Fatal("editing a snapshot changed the store")
	}

	// A frozen capture does not move with the store.
	frozen := s.Freeze()
	mustChange(t, s, 200, deletePlacementCmd("tenant-a"))
	if st := frozen.State(); frozen.Revision() != 103 || st.GetRevision() != 103 || len(st.GetConfig().GetPlacements()) != 2 {
		t.Fatalf("frozen state moved: %v", st)
	}
}

func TestEmptyRoundTrip(t *testing.T) {
	r, err := FromState(New().Freeze().State())
	if err != nil || r.Freeze().Revision() != 0 || !proto.Equal(r.Freeze().State(), New().Freeze().State()) {
		t.Fatalf("empty round trip: %v, %v", r.Freeze().State(), err)
	}
	r, err = FromState(&pb.State{})
	if err != nil || r.Freeze().Revision() != 0 {
		t.Fatalf("state without config: %v", err)
	}
}

func TestFromStateRefusesInvalidSnapshots(t *testing.T) {
	valid := func() *pb.State { return configured(t).Freeze().State() }
	tests := []struct {
		name string
		edit func(*pb.State) *pb.State
		msg  string
	}{
		{"nil", func(*pb.State) *pb.State { return nil }, "nil"},
		{"placement to missing cell", func(st *pb.State) *pb.State {
			st.Config.Placements[0].Cell = "gone"
			return st
		}, "config.placements[0].cell"},
		{"unstamped cell", func(st *pb.State) *pb.State {
			st.Config.Cells[1].CreateRevision = 0
			return st
		}, "config.cells[1]"},
		{"placement from the future", func(st *pb.State) *pb.State {
			st.Config.Placements[1].ModRevision = 11
			return st
		}, "config.placements[1]"},
		{"create after mod", func(st *pb.State) *pb.State {
			st.Revision = 20
			st.Config.Placements[0].CreateRevision = 15
			return st
		}, "config.placements[0]"},
		{"invalid member", func(st *pb.State) *pb.State {
			st.Members = []*pb.Member{{Name: "n1", Region: "us-east", RaftAddr: "nohost", GrpcAddr: "h:1"}}
			return st
		}, "members[0].raft_addr"},
		{"duplicate member", func(st *pb.State) *pb.State {
			st.Members = []*pb.Member{member("n1", "us-east"), member("n1", "eu-west")}
			return st
		}, "members[1].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := FromState(tc.edit(valid()))
			if !errors.Is(err, ErrInvalidSnapshot) || s != nil {
				t.Fatalf("FromState = %v, %v; want ErrInvalidSnapshot", s, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not name %q", err, tc.msg)
			}
		})
	}
}
