package state

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// model applies Change events one at a time, the way an edge does, and
// checks after each event the guarantees of the event order: no placement
// names a missing cell, and a cell that arrives names only known regions.
type model struct {
	revision   uint64
	topo       *pb.Topology
	cells      map[string]*pb.Cell
	placements map[string]*pb.Placement
	members    map[string]*pb.Member
}

func newModel(st *pb.State) *model {
	m := &model{
		revision:   st.GetRevision(),
		topo:       &pb.Topology{Regions: st.GetConfig().GetRegions(), Latencies: st.GetConfig().GetLatencies(), DefaultCell: st.GetConfig().GetDefaultCell()},
		cells:      map[string]*pb.Cell{},
		placements: map[string]*pb.Placement{},
		members:    map[string]*pb.Member{},
	}
	for _, c := range st.GetConfig().GetCells() {
		m.cells[c.GetId()] = c
	}
	for _, p := range st.GetConfig().GetPlacements() {
		m.placements[p.GetKey()] = p
	}
	for _, mb := range st.GetMembers() {
		m.members[mb.GetName()] = mb
	}
	return m
}

func (m *model) apply(t *testing.T, ch *pb.Change) {
	t.Helper()
	if ch.GetRevision() <= m.revision {
		t.Fatalf("change at %d does not follow revision %d", ch.GetRevision(), m.revision)
	}
	for i, e := range ch.GetEvents() {
		switch k := e.GetKind().(type) {
		case *pb.Event_SetTopology:
			m.topo = k.SetTopology
		case *pb.Event_PutCell:
			for _, ep := range k.PutCell.GetEndpoints() {
				if !slices.ContainsFunc(m.topo.GetRegions(), func(r *pb.Region) bool { return r.GetName() == ep.GetRegion() }) {
					t.Fatalf("change %d event %d: cell %q arrives with endpoint region %q before its region", ch.GetRevision(), i, k.PutCell.GetId(), ep.GetRegion())
				}
			}
			m.cells[k.PutCell.GetId()] = k.PutCell
		case *pb.Event_DeleteCell:
			delete(m.cells, k.DeleteCell)
		case *pb.Event_PutPlacement:
			m.placements[k.PutPlacement.GetKey()] = k.PutPlacement
		case *pb.Event_DeletePlacement:
			delete(m.placements, k.DeletePlacement)
		case *pb.Event_PutMember:
			m.members[k.PutMember.GetName()] = k.PutMember
		case *pb.Event_DeleteMember:
			delete(m.members, k.DeleteMember)
		default:
			t.Fatalf("change %d event %d has no kind", ch.GetRevision(), i)
		}
		for _, p := range m.placements {
			if _, ok := m.cells[p.GetCell()]; !ok {
				t.Fatalf("change %d event %d (%s): placement %q names missing cell %q", ch.GetRevision(), i, eventKinds(ch)[i], p.GetKey(), p.GetCell())
			}
		}
	}
	m.revision = ch.GetRevision()
}

func (m *model) state() *pb.State {
	cfg := &pb.RoutingConfig{Regions: m.topo.GetRegions(), Latencies: m.topo.GetLatencies(), DefaultCell: m.topo.GetDefaultCell()}
	for _, id := range slices.Sorted(maps.Keys(m.cells)) {
		cfg.Cells = append(cfg.Cells, m.cells[id])
	}
	for _, k := range slices.Sorted(maps.Keys(m.placements)) {
		cfg.Placements = append(cfg.Placements, m.placements[k])
	}
	st := &pb.State{Revision: m.revision, Config: cfg}
	for _, n := range slices.Sorted(maps.Keys(m.members)) {
		st.Members = append(st.Members, m.members[n])
	}
	return st
}

// applyAndFollow applies cmd to s and checks that the returned Change,
// applied to the previous state, gives exactly the new state.
func applyAndFollow(t *testing.T, s *Store, index uint64, cmd *pb.Command) (*pb.CommandResult, *pb.Change) {
	t.Helper()
	before := s.Freeze().State()
	res, ch := s.Apply(index, cmd)
	if ch == nil {
		if !proto.Equal(before, s.Freeze().State()) {
			t.Fatalf("index %d changed the state without a Change", index)
		}
		return res, nil
	}
	m := newModel(before)
	m.apply(t, ch)
	if got, want := m.state(), s.Freeze().State(); !proto.Equal(got, want) {
		t.Fatalf("index %d: events %s do not describe the change\nfollowed: %v\nstore:    %v",
			index, strings.Join(eventKinds(ch), " "), got, want)
	}
	return res, ch
}
