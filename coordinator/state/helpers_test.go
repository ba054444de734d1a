package state

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// baseConfig is a small valid config: three regions, three cells (one
// without endpoints), two placements and a default cell. Each call returns a
// fresh copy that the test may edit.
func baseConfig() *pb.RoutingConfig {
	return &pb.RoutingConfig{
		Regions: []*pb.Region{{Name: "us-east"}, {Name: "eu-west"}, {Name: "ap-south"}},
		Latencies: []*pb.Latency{
			{From: "us-east", To: "eu-west", OneWayMs: 40},
			{From: "eu-west", To: "ap-south", OneWayMs: 60, JitterMs: 5},
		},
		Cells: []*pb.Cell{
			{Id: "c1", Endpoints: []*pb.Endpoint{
				{Id: "c1-use", Url: "http://10.0.0.1:8080", Region: "us-east", Weight: 2},
				{Id: "c1-euw", Url: "https://c1.eu.example/api", Region: "eu-west"},
			}},
			{Id: "c2", Endpoints: []*pb.Endpoint{
				{Id: "c2-aps", Url: "http://[::1]:9090", Region: "ap-south", Weight: 10000},
			}},
			{Id: "spare"},
		},
		Placements: []*pb.Placement{
			{Key: "tenant-a", Cell: "c1"},
			{Key: "tenant-b", Cell: "c2"},
		},
		DefaultCell: "c1",
	}
}

func applyConfigCmd(cfg *pb.RoutingConfig) *pb.Command {
	return &pb.Command{Op: &pb.Command_ApplyConfig{ApplyConfig: &pb.ApplyConfigOp{Config: cfg}}}
}

func putCellCmd(c *pb.Cell) *pb.Command {
	return &pb.Command{Op: &pb.Command_PutCell{PutCell: &pb.PutCellOp{Cell: c}}}
}

func deleteCellCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_DeleteCell{DeleteCell: &pb.DeleteCellOp{Id: id}}}
}

func putPlacementCmd(key, cell string) *pb.Command {
	return &pb.Command{Op: &pb.Command_PutPlacement{PutPlacement: &pb.PutPlacementOp{Placement: &pb.Placement{Key: key, Cell: cell}}}}
}

func deletePlacementCmd(key string) *pb.Command {
	return &pb.Command{Op: &pb.Command_DeletePlacement{DeletePlacement: &pb.DeletePlacementOp{Key: key}}}
}

func putMemberCmd(m *pb.Member) *pb.Command {
	return &pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: m}}}
}

func deleteMemberCmd(name string) *pb.Command {
	return &pb.Command{Op: &pb.Command_DeleteMember{DeleteMember: &pb.DeleteMemberOp{Name: name}}}
}

func member(name, region string) *pb.Member {
	return &pb.Member{Name: name, Region: region, RaftAddr: "127.0.0.1:7001", GrpcAddr: "127.0.0.1:7101"}
}

// mustChange applies cmd and fails unless it succeeded with a change at index.
func mustChange(t testing.TB, s *Store, index uint64, cmd *pb.Command) *pb.Change {
	t.Helper()
	res, ch := s.Apply(index, cmd)
	if res.GetError() != nil {
		t.Fatalf("apply at %d refused: %v", index, res.GetError())
	}
	if ch == nil || res.GetRevision() != index || ch.GetRevision() != index || s.Freeze().Revision() != index {
		t.Fatalf("apply at %d: result revision %d, change %v, store revision %d; want a change at %d",
			index, res.GetRevision(), ch, s.Freeze().Revision(), index)
	}
	return ch
}

// mustRefuse applies cmd, expects a refusal with code and field, and checks
// that neither the state nor the revision moved.
func mustRefuse(t testing.TB, s *Store, index uint64, cmd *pb.Command, code pb.CommandError_Code, field string) *pb.CommandError {
	t.Helper()
	before := s.Freeze().State()
	res, ch := s.Apply(index, cmd)
	e := res.GetError()
	if e == nil {
		t.Fatalf("apply at %d succeeded; want %v on %q", index, code, field)
	}
	if e.GetCode() != code || e.GetField() != field {
		t.Fatalf("refused with %v on %q (%s); want %v on %q", e.GetCode(), e.GetField(), e.GetMessage(), code, field)
	}
	if e.GetMessage() == "" {
		t.Fatalf("refusal on %q has no message", field)
	}
	if ch != nil {
		t.Fatalf("refusal returned a change: %v", ch)
	}
	if res.GetRevision() != before.GetRevision() || s.Freeze().Revision() != before.GetRevision() {
		t.Fatalf("refusal moved the revision: result %d, store %d, before %d", res.GetRevision(), s.Freeze().Revision(), before.GetRevision())
	}
	if after := s.Freeze().State(); !proto.Equal(before, after) {
		t.Fatalf("refusal changed the state:\nbefore %v\nafter  %v", before, after)
	}
	return e
}

// mustNoop applies cmd and expects success without a change.
func mustNoop(t testing.TB, s *Store, index uint64, cmd *pb.Command) {
	t.Helper()
	before := s.Freeze().State()
	res, ch := s.Apply(index, cmd)
	if res.GetError() != nil || ch != nil {
		t.Fatalf("apply at %d: error %v, change %v; want a no-op", index, res.GetError(), ch)
	}
	if res.GetRevision() != before.GetRevision() || !proto.Equal(before, s.Freeze().State()) {
		t.Fatalf("no-op moved the state: result revision %d, before %d", res.GetRevision(), before.GetRevision())
	}
}

// configured returns a store holding baseConfig at revision 10.
func configured(t testing.TB) *Store {
	t.Helper()
	s := New()
	mustChange(t, s, 10, applyConfigCmd(baseConfig()))
	return s
}

// wantEvents fails unless the change's events are exactly want, in order.
func wantEvents(t testing.TB, ch *pb.Change, want ...string) {
	t.Helper()
	if got := eventKinds(ch); !slices.Equal(got, want) {
		t.Fatalf("events %v; want %v", got, want)
	}
}

// eventKinds renders a change's events compactly, e.g. "put_cell:c2".
func eventKinds(ch *pb.Change) []string {
	var out []string
	for _, e := range ch.GetEvents() {
		switch k := e.GetKind().(type) {
		case *pb.Event_PutCell:
			out = append(out, "put_cell:"+k.PutCell.GetId())
		case *pb.Event_DeleteCell:
			out = append(out, "delete_cell:"+k.DeleteCell)
		case *pb.Event_PutPlacement:
			out = append(out, "put_placement:"+k.PutPlacement.GetKey())
		case *pb.Event_DeletePlacement:
			out = append(out, "delete_placement:"+k.DeletePlacement)
		case *pb.Event_SetTopology:
			out = append(out, "set_topology")
		case *pb.Event_PutMember:
			out = append(out, "put_member:"+k.PutMember.GetName())
		case *pb.Event_DeleteMember:
			out = append(out, "delete_member:"+k.DeleteMember)
		case *pb.Event_PutBreaker:
			out = append(out, "put_breaker:"+k.PutBreaker.GetEndpoint()+"="+k.PutBreaker.GetState().String())
		case *pb.Event_PutHealth:
			out = append(out, "put_health:"+k.PutHealth.GetEndpoint()+"="+k.PutHealth.GetVerdict().String())
		default:
			out = append(out, "unknown")
		}
	}
	return out
}
