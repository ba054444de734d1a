package state

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestApplyConfigDiff(t *testing.T) {
	s := New()
	first := baseConfig()
	first.Placements = append(first.Placements, &pb.Placement{Key: "tenant-d", Cell: "spare"})
	ch := mustChange(t, s, 10, applyConfigCmd(first))
	want := []string{"set_topology", "put_cell:c1", "put_cell:c2", "put_cell:spare",
		"put_placement:tenant-a", "put_placement:tenant-b", "put_placement:tenant-d"}
	wantEvents(t, ch, want...)

	// c1 unchanged, c2 changed, spare removed, c3 added; tenant-a unchanged,
	// tenant-b moved to the new cell, tenant-c added, tenant-d removed (with
	// its cell); c2's endpoint moves to c3, which the same config allows.
	next := baseConfig()
	next.Cells[1].Endpoints[0].Weight = 7
	next.Cells[1].Endpoints[0].Id = "c2-aps-2"
	next.Cells[2] = &pb.Cell{Id: "c3", Endpoints: []*pb.Endpoint{{Id: "c2-aps", Url: "http://c3", Region: "ap-south"}}}
	next.Placements[1].Cell = "c3"
	next.Placements = append(next.Placements, &pb.Placement{Key: "tenant-c", Cell: "c1"})
	_, ch = applyAndFollow(t, s, 20, applyConfigCmd(next))
	want = []string{"put_cell:c2", "put_cell:c3", "put_placement:tenant-b", "put_placement:tenant-c",
		"delete_placement:tenant-d", "delete_cell:spare"}
	wantEvents(t, ch, want...)
	stamps := func(create, mod uint64) [2]uint64 { return [2]uint64{create, mod} }
	cellStamps := map[string][2]uint64{"c1": stamps(10, 10), "c2": stamps(10, 20), "c3": stamps(20, 20)}
	cells, rev := s.Freeze().Cells(), s.Freeze().Revision()
	if rev != 20 || len(cells) != len(cellStamps) {
		t.Fatalf("cells at %d: %v", rev, cells)
	}
	for _, c := range cells {
		if got := stamps(c.GetCreateRevision(), c.GetModRevision()); got != cellStamps[c.GetId()] {
			t.Errorf("cell %s stamps %v; want %v", c.GetId(), got, cellStamps[c.GetId()])
		}
	}
	placementStamps := map[string][2]uint64{"tenant-a": stamps(10, 10), "tenant-b": stamps(10, 20), "tenant-c": stamps(20, 20)}
	ps, _ := s.Freeze().Placements("", "", 0)
	if len(ps) != len(placementStamps) {
		t.Fatalf("placements %v", ps)
	}
	for _, p := range ps {
		if got := stamps(p.GetCreateRevision(), p.GetModRevision()); got != placementStamps[p.GetKey()] {
			t.Errorf("placement %s stamps %v; want %v", p.GetKey(), got, placementStamps[p.GetKey()])
		}
	}
	// Endpoint ownership followed the move: c2-aps now belongs to c3.
	mustRefuse(t, s, 21, putCellCmd(&pb.Cell{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "c2-aps", Url: "http://h", Region: "us-east"}}}),
		pb.CommandError_CODE_INVALID_ARGUMENT, "cell.endpoints[0].id")

	// The same config again: success, nothing changes, the revision stays.
	res, ch := s.Apply(21, applyConfigCmd(next))
	if res.GetError() != nil || ch != nil || res.GetRevision() != 20 || s.Freeze().Revision() != 20 {
		t.Fatalf("identical apply: %v, change %v, revision %d", res, ch, s.Freeze().Revision())
	}

	// Only a latency changes: one set_topology event carrying the whole topology.
	topo := baseConfig()
	topo.Cells, topo.Placements = next.Cells, next.Placements
	topo.Latencies[0].OneWayMs = 45
	_, ch = applyAndFollow(t, s, 22, applyConfigCmd(topo))
	wantEvents(t, ch, "set_topology")
	wantTopo := &pb.Topology{Regions: topo.Regions, Latencies: topo.Latencies, DefaultCell: "c1"}
	if got := ch.Events[0].GetSetTopology(); !proto.Equal(got, wantTopo) {
		t.Fatalf("set_topology %v; want %v", got, wantTopo)
	}
	if c, _ := s.Freeze().Cell("c1"); c.GetModRevision() != 10 {
		t.Fatalf("a topology change restamped cell c1: %v", c)
	}
}

// TestApplyConfigEventOrder replays configs that add and remove regions,
// cells, placements and the default cell together, and follows each Change
// event by event: no placement may ever name a missing cell, no cell may
// arrive before its regions, and the followed state must equal the store's.
func TestApplyConfigEventOrder(t *testing.T) {
	withRegion := baseConfig()
	withRegion.Regions = append(withRegion.Regions, &pb.Region{Name: "sa-east"})
	withRegion.Cells = append(withRegion.Cells, &pb.Cell{Id: "c9", Endpoints: []*pb.Endpoint{{Id: "c9-sae", Url: "http://c9", Region: "sa-east"}}})
	withRegion.Placements = append(withRegion.Placements, &pb.Placement{Key: "tenant-z", Cell: "c9"})
	withRegion.DefaultCell = "c9"

	moved := baseConfig()
	moved.Cells = moved.Cells[:2]
	moved.Cells[0].Endpoints = moved.Cells[0].Endpoints[:1]
	moved.Placements = []*pb.Placement{{Key: "tenant-a", Cell: "c2"}, {Key: "tenant-y", Cell: "c1"}}
	moved.DefaultCell = ""

	configs := []*pb.RoutingConfig{baseConfig(), withRegion, moved, baseConfig(), {}, withRegion, {}}
	s := New()
	for i, cfg := range configs {
		res, _ := applyAndFollow(t, s, uint64(i+1)*10, applyConfigCmd(cfg))
		if res.GetError() != nil {
			t.Fatalf("config %d refused: %v", i, res.GetError())
		}
		got := s.Freeze().Config()
		if len(got.GetCells()) != len(cfg.GetCells()) || len(got.GetPlacements()) != len(cfg.GetPlacements()) || got.GetDefaultCell() != cfg.GetDefaultCell() {
			t.Fatalf("config %d not applied: %v", i, got)
		}
	}
}
