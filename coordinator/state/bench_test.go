package state

import (
	"fmt"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

const benchPlacements = 100_000

// bigStore holds benchPlacements placements over 100 cells, at revision 1.
func bigStore(b *testing.B) *Store {
	b.Helper()
	cfg := &pb.RoutingConfig{Regions: []*pb.Region{{Name: "us-east"}}}
	for c := 0; c < 100; c++ {
		cfg.Cells = append(cfg.Cells, &pb.Cell{Id: fmt.Sprintf("cell-%02d", c), Endpoints: []*pb.Endpoint{
			{Id: fmt.Sprintf("ep-%02d", c), Url: "http://10.0.0.1:8080", Region: "us-east"},
		}})
	}
	for i := 0; i < benchPlacements; i++ {
		cfg.Placements = append(cfg.Placements, &pb.Placement{Key: fmt.Sprintf("tenant-%06d", i), Cell: fmt.Sprintf("cell-%02d", i%100)})
	}
	s := New()
	if res, _ := s.Apply(1, applyConfigCmd(cfg)); res.GetError() != nil {
		b.Fatal(res.GetError())
	}
	return s
}

// BenchmarkApplyPutPlacement moves an existing key to another cell in a store
// of 100,000 placements: every iteration is a real change with its event.
func BenchmarkApplyPutPlacement(b *testing.B) {
	s := bigStore(b)
	// Keys on cells 00..49, moved to cell 50 or 51 alternately on each pass,
	// so that every iteration is a real change with its event.
	cmds := make([]*pb.Command, 1000)
	for j := range cmds {
		cmds[j] = putPlacementCmd(fmt.Sprintf("tenant-%06d", (j*100+j%50)%benchPlacements), "")
	}
	targets := [2]string{"cell-50", "cell-51"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := cmds[i%len(cmds)]
		cmd.GetPutPlacement().Placement.Cell = targets[(i/len(cmds))%2]
		if _, ch := s.Apply(uint64(i+2), cmd); ch == nil {
			b.Fatal("no change")
		}
	}
}

// BenchmarkApplyConfigUnchanged re-applies the whole 100,000-placement config:
// the diff cost an `edgecell apply -f` of a large, mostly unchanged file pays.
func BenchmarkApplyConfigUnchanged(b *testing.B) {
	s := bigStore(b)
	cfg := s.Freeze().Config()
	cmd := applyConfigCmd(cfg)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res, ch := s.Apply(uint64(i+2), cmd); res.GetError() != nil || ch != nil {
			b.Fatal(res, ch)
		}
	}
}

// BenchmarkSnapshot copies the whole state of 100,000 placements, as a raft
// snapshot or a watch reset does.
func BenchmarkSnapshot(b *testing.B) {
	s := bigStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st := s.Freeze().State(); len(st.GetConfig().GetPlacements()) != benchPlacements {
			b.Fatal(len(st.GetConfig().GetPlacements()))
		}
	}
}

// BenchmarkPlacementsPage reads one page of 100 in the middle of 100,000 placements.
func BenchmarkPlacementsPage(b *testing.B) {
	s := bigStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ps, next := s.Freeze().Placements("tenant-05", "tenant-050000", 100); len(ps) != 100 || next == "" {
			b.Fatal(len(ps), next)
		}
	}
}
