package state

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestPutCell(t *testing.T) {
	s := configured(t)
	// New cell: both stamps are the index, whatever the input said.
	c3 := &pb.Cell{Id: "c3", CreateRevision: 999, ModRevision: 999, Endpoints: []*pb.Endpoint{
		{Id: "c3-use", Url: "http://c3", Region: "us-east"},
	}}
	ch := mustChange(t, s, 11, putCellCmd(c3))
	wantEvents(t, ch, "put_cell:c3")
	if ev := ch.Events[0].GetPutCell(); ev.GetCreateRevision() != 11 || ev.GetModRevision() != 11 || len(ev.GetEndpoints()) != 1 {
		t.Fatalf("event cell %v; want stamps 11/11 and its endpoint", ev)
	}
	got, ok := s.Freeze().Cell("c3")
	rev := s.Freeze().Revision()
	if !ok || rev != 11 || got.GetCreateRevision() != 11 || got.GetModRevision() != 11 {
		t.Fatalf("Cell(c3) = %v, %d, %v", got, rev, ok)
	}

	// Update: create_revision survives, mod_revision moves; an endpoint may
	// move within its own cell and the cell may take an endpoint id no other cell uses.
	c3.Endpoints = append(c3.Endpoints, &pb.Endpoint{Id: "c3-euw", Url: "https://c3.eu", Region: "eu-west", Weight: 5})
	mustChange(t, s, 12, putCellCmd(c3))
	got, _ = s.Freeze().Cell("c3")
	if got.GetCreateRevision() != 11 || got.GetModRevision() != 12 || len(got.GetEndpoints()) != 2 {
		t.Fatalf("updated cell %v; want create 11, mod 12, two endpoints", got)
	}

	// Putting the same cell again (stamps aside) changes nothing.
	mustNoop(t, s, 13, putCellCmd(&pb.Cell{Id: "c3", ModRevision: 1, Endpoints: c3.Endpoints}))

	// An endpoint id freed by one cell can be taken by another.
	mustChange(t, s, 14, putCellCmd(&pb.Cell{Id: "c3"}))
	mustChange(t, s, 15, putCellCmd(&pb.Cell{Id: "spare", Endpoints: []*pb.Endpoint{{Id: "c3-use", Url: "http://x", Region: "us-east"}}}))

	// The store kept its own copy: editing the input later changes nothing.
	c3.Endpoints[0].Url = "http://mutated"
	if got, _ := s.Freeze().Cell("c3"); len(got.GetEndpoints()) != 0 {
		t.Fatalf("cell c3 = %v; want no endpoints", got)
	}
}

func TestPutCellRefusals(t *testing.T) {
	tests := []struct {
		name  string
		cell  *pb.Cell
		field string
		msg   string
	}{
		{"missing", nil, "cell", "required"},
		{"bad id", &pb.Cell{Id: "c 3"}, "cell.id", `"c 3"`},
		{"region not in the current config", &pb.Cell{Id: "c3", Endpoints: []*pb.Endpoint{
			{Id: "e1", Url: "http://h", Region: "us-east"}, {Id: "e2", Url: "http://h", Region: "sa-east"},
		}}, "cell.endpoints[1].region", `"sa-east" is not configured`},
		{"endpoint id of another cell", &pb.Cell{Id: "c3", Endpoints: []*pb.Endpoint{{Id: "c2-aps", Url: "http://h", Region: "us-east"}}},
			"cell.endpoints[0].id", `already used by cell "c2"`},
		{"bad url", &pb.Cell{Id: "c3", Endpoints: []*pb.Endpoint{{Id: "e", Url: "h:80", Region: "us-east"}}}, "cell.endpoints[0].url", "http"},
		{"weight", &pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "e", Url: "http://h", Region: "us-east", Weight: 20000}}}, "cell.endpoints[0].weight", "20000"},
		{"panic threshold over 100", &pb.Cell{Id: "c3", PanicThresholdPercent: 101}, "cell.panic_threshold_percent", "101 is over 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustRefuse(t, configured(t), 11, putCellCmd(tc.cell), pb.CommandError_CODE_INVALID_ARGUMENT, tc.field)
			if !strings.Contains(e.GetMessage(), tc.msg) {
				t.Fatalf("message %q does not contain %q", e.GetMessage(), tc.msg)
			}
		})
	}
}

// TestPanicThresholdChangesTheCell: the panic threshold is part of what a
// user writes, so changing it (and only it) is a change the edges hear of,
// and 100 is the largest accepted value.
func TestPanicThresholdChangesTheCell(t *testing.T) {
	s := configured(t)
	cell := func(pct uint32) *pb.Cell {
		return &pb.Cell{Id: "c3", PanicThresholdPercent: pct, Endpoints: []*pb.Endpoint{{Id: "c3-use", Url: "http://c3", Region: "us-east"}}}
	}
	mustChange(t, s, 11, putCellCmd(cell(0)))
	for i, pct := range []uint32{50, 100, 0} {
		ch := mustChange(t, s, uint64(12+i), putCellCmd(cell(pct)))
		wantEvents(t, ch, "put_cell:c3")
		if got := ch.Events[0].GetPutCell().GetPanicThresholdPercent(); got != pct {
			t.Fatalf("put_cell event carries panic_threshold_percent %d, want %d", got, pct)
		}
		if got, _ := s.Freeze().Cell("c3"); got.GetPanicThresholdPercent() != pct {
			t.Fatalf("stored cell %v, want panic_threshold_percent %d", got, pct)
		}
	}
	mustNoop(t, s, 15, putCellCmd(cell(0)))
}

func TestDeleteCell(t *testing.T) {
	s := configured(t)
	ch := mustChange(t, s, 11, deleteCellCmd("spare"))
	wantEvents(t, ch, "delete_cell:spare")
	if _, ok := s.Freeze().Cell("spare"); ok {
		t.Fatal("cell spare still there")
	}
	// The endpoints of a deleted cell are free again.
	mustChange(t, s, 12, deletePlacementCmd("tenant-b"))
	mustChange(t, s, 13, deleteCellCmd("c2"))
	mustChange(t, s, 14, putCellCmd(&pb.Cell{Id: "c4", Endpoints: []*pb.Endpoint{{Id: "c2-aps", Url: "http://h", Region: "ap-south"}}}))

	tests := []struct {
		name  string
		id    string
		code  pb.CommandError_Code
		field string
		msg   string
	}{
		{"empty id", "", pb.CommandError_CODE_INVALID_ARGUMENT, "id", "required"},
		{"absent", "nope", pb.CommandError_CODE_NOT_FOUND, "id", `"nope" does not exist`},
		{"used by placements", "c1", pb.CommandError_CODE_FAILED_PRECONDITION, "id", `used by 1 placement(s), for example "tenant-a"`},
		{"default cell", "c4", pb.CommandError_CODE_FAILED_PRECONDITION, "id", "default cell"},
	}
	s2 := configured(t)
	for _, k := range []string{"x1", "x2", "x3"} {
		mustChange(t, s2, s2.Freeze().Revision()+1, putPlacementCmd(k, "c2"))
	}
	mustChange(t, s2, s2.Freeze().Revision()+1, deletePlacementCmd("tenant-a"))
	cfg := baseConfig()
	cfg.Placements = nil
	cfg.Cells = append(cfg.Cells, &pb.Cell{Id: "c4"})
	cfg.DefaultCell = "c4"
	mustChange(t, s, 15, applyConfigCmd(cfg))
	mustChange(t, s, 16, putPlacementCmd("tenant-a", "c1"))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustRefuse(t, s, 100, deleteCellCmd(tc.id), tc.code, tc.field)
			if !strings.Contains(e.GetMessage(), tc.msg) {
				t.Fatalf("message %q does not contain %q", e.GetMessage(), tc.msg)
			}
		})
	}
	t.Run("count and first placement", func(t *testing.T) {
		e := mustRefuse(t, s2, 100, deleteCellCmd("c2"), pb.CommandError_CODE_FAILED_PRECONDITION, "id")
		if want := `used by 4 placement(s), for example "tenant-b"`; !strings.Contains(e.GetMessage(), want) {
			t.Fatalf("message %q does not contain %q", e.GetMessage(), want)
		}
	})
}

func TestPutPlacement(t *testing.T) {
	s := configured(t)
	ch := mustChange(t, s, 11, &pb.Command{Op: &pb.Command_PutPlacement{PutPlacement: &pb.PutPlacementOp{
		Placement: &pb.Placement{Key: "tenant-c", Cell: "spare", CreateRevision: 3, ModRevision: 4},
	}}})
	want := &pb.Placement{Key: "tenant-c", Cell: "spare", CreateRevision: 11, ModRevision: 11}
	if got := ch.Events[0].GetPutPlacement(); len(ch.Events) != 1 || !proto.Equal(got, want) {
		t.Fatalf("events %v; want one put_placement %v", ch.Events, want)
	}
	mustChange(t, s, 12, putPlacementCmd("tenant-c", "c2"))
	got, ok := s.Freeze().Placement("tenant-c")
	rev := s.Freeze().Revision()
	if want := (&pb.Placement{Key: "tenant-c", Cell: "c2", CreateRevision: 11, ModRevision: 12}); !ok || rev != 12 || !proto.Equal(got, want) {
		t.Fatalf("Placement = %v, %d, %v; want %v at 12", got, rev, ok, want)
	}
	mustNoop(t, s, 13, putPlacementCmd("tenant-c", "c2"))
	// Moving the key off "spare" frees that cell.
	mustChange(t, s, 14, deleteCellCmd("spare"))

	tests := []struct {
		name  string
		cmd   *pb.Command
		field string
	}{
		{"missing", &pb.Command{Op: &pb.Command_PutPlacement{PutPlacement: &pb.PutPlacementOp{}}}, "placement"},
		{"bad key", putPlacementCmd("a key", "c1"), "placement.key"},
		{"empty cell", putPlacementCmd("k", ""), "placement.cell"},
		{"absent cell", putPlacementCmd("k", "spare"), "placement.cell"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustRefuse(t, s, 100, tc.cmd, pb.CommandError_CODE_INVALID_ARGUMENT, tc.field)
		})
	}
}

func TestDeletePlacement(t *testing.T) {
	s := configured(t)
	ch := mustChange(t, s, 11, deletePlacementCmd("tenant-b"))
	wantEvents(t, ch, "delete_placement:tenant-b")
	if _, ok := s.Freeze().Placement("tenant-b"); ok {
		t.Fatal("placement still there")
	}
	mustRefuse(t, s, 12, deletePlacementCmd("tenant-b"), pb.CommandError_CODE_NOT_FOUND, "key")
	mustRefuse(t, s, 12, deletePlacementCmd(""), pb.CommandError_CODE_INVALID_ARGUMENT, "key")
}

func TestMembers(t *testing.T) {
	s := New()
	ch := mustChange(t, s, 1, putMemberCmd(member("n2", "eu-west")))
	wantEvents(t, ch, "put_member:n2")
	mustChange(t, s, 2, putMemberCmd(member("n1", "us-east")))
	mustNoop(t, s, 3, putMemberCmd(member("n1", "us-east")))
	moved := member("n1", "us-east")
	moved.GrpcAddr = "10.1.1.1:7101"
	mustChange(t, s, 4, putMemberCmd(moved))
	if m, ok := s.Freeze().Member("n1"); !ok || !proto.Equal(m, moved) {
		t.Fatalf("Member(n1) = %v, %v", m, ok)
	}
	if ms := s.Freeze().Members(); len(ms) != 2 || ms[0].GetName() != "n1" || ms[1].GetName() != "n2" {
		t.Fatalf("Members() = %v; want n1, n2", ms)
	}
	ch = mustChange(t, s, 5, deleteMemberCmd("n2"))
	wantEvents(t, ch, "delete_member:n2")
	if _, ok := s.Freeze().Member("n2"); ok {
		t.Fatal("n2 still a member")
	}
	mustRefuse(t, s, 6, deleteMemberCmd("n2"), pb.CommandError_CODE_NOT_FOUND, "name")
	mustRefuse(t, s, 6, deleteMemberCmd(""), pb.CommandError_CODE_INVALID_ARGUMENT, "name")
	// Members are not part of the routing config: applying one keeps them.
	mustChange(t, s, 7, applyConfigCmd(baseConfig()))
	if len(s.Freeze().Members()) != 1 {
		t.Fatalf("ApplyConfig dropped members: %v", s.Freeze().Members())
	}
}

func TestExpectRevision(t *testing.T) {
	s := configured(t)
	cmd := putPlacementCmd("tenant-c", "c1")
	cmd.ExpectRevision = 9
	e := mustRefuse(t, s, 11, cmd, pb.CommandError_CODE_REVISION_MISMATCH, "expect_revision")
	if !strings.Contains(e.GetMessage(), "expected revision 9") || !strings.Contains(e.GetMessage(), "current revision is 10") {
		t.Fatalf("message %q does not name both revisions", e.GetMessage())
	}
	// A mismatch is checked before anything else, even for invalid input.
	bad := deleteCellCmd("nope")
	bad.ExpectRevision = 1
	mustRefuse(t, s, 11, bad, pb.CommandError_CODE_REVISION_MISMATCH, "expect_revision")

	cmd.ExpectRevision = 10
	mustChange(t, s, 11, cmd)
	cfg := baseConfig()
	cfg.DefaultCell = ""
	apply := applyConfigCmd(cfg)
	apply.ExpectRevision = 10
	mustRefuse(t, s, 12, apply, pb.CommandError_CODE_REVISION_MISMATCH, "expect_revision")
	apply.ExpectRevision = 11
	mustChange(t, s, 12, apply)
}

func TestApplyPanicsOnCorruptLog(t *testing.T) {
	tests := []struct {
		name  string
		index uint64
		cmd   *pb.Command
	}{
		{"no operation", 11, &pb.Command{ExpectRevision: 0}},
		{"nil command", 11, nil},
		{"index at the revision", 10, putPlacementCmd("k", "c1")},
		{"index below the revision", 3, putPlacementCmd("k", "c1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := configured(t)
			defer func() {
				if recover() == nil {
					t.Fatal("Apply did not panic")
				}
				if s.Freeze().Revision() != 10 {
					t.Fatalf("revision moved to %d", s.Freeze().Revision())
				}
			}()
			s.Apply(tc.index, tc.cmd)
		})
	}
}
