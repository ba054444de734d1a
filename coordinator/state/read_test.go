package state

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestPlacementsPaging(t *testing.T) {
	s := configured(t)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"tenant-a", "tenant-b"}
	parts := []string{"a", "ab", "b", "a/", "a/1", "z", "~", "!", "A"}
	index := uint64(10)
	for len(keys) < 600 {
		k := parts[rng.IntN(len(parts))] + parts[rng.IntN(len(parts))] + fmt.Sprint(rng.IntN(50))
		if slices.Contains(keys, k) {
			continue
		}
		keys = append(keys, k)
		index++
		mustChange(t, s, index, putPlacementCmd(k, []string{"c1", "c2", "spare"}[rng.IntN(3)]))
	}
	slices.Sort(keys)
	for _, prefix := range []string{"", "a", "a/", "ab", "b1", "~", "nothing", "tenant-"} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		for _, limit := range []int{0, 1, 7, 1000} {
			var got []string
			after, pages := "", 0
			for {
				ps, next := s.Freeze().Placements(prefix, after, limit)
				rev := s.Freeze().Revision()
				if rev != index {
					t.Fatalf("revision %d; want %d", rev, index)
				}
				if limit > 0 && len(ps) > limit {
					t.Fatalf("page of %d with limit %d", len(ps), limit)
				}
				for _, p := range ps {
					got = append(got, p.GetKey())
				}
				pages++
				if next == "" {
					break
				}
				if next != ps[len(ps)-1].GetKey() || pages > len(keys) {
					t.Fatalf("next %q after page ending %q", next, ps[len(ps)-1].GetKey())
				}
				after = next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("prefix %q limit %d: got %d keys %v, want %d %v", prefix, limit, len(got), got, len(want), want)
			}
		}
	}
	// A startAfter outside the prefix range, or past its end, is harmless.
	if ps, next := s.Freeze().Placements("tenant-", "a", 0); len(ps) != 2 || next != "" {
		t.Fatalf("startAfter before the prefix: %v %q", ps, next)
	}
	if ps, _ := s.Freeze().Placements("tenant-", "tenant-b", 0); len(ps) != 0 {
		t.Fatalf("startAfter at the end: %v", ps)
	}
	if p, ok := s.Freeze().Placement("nope"); ok || p != nil {
		t.Fatalf("Placement(nope) = %v", p)
	}
}

func TestConfigOrder(t *testing.T) {
	cfg := baseConfig()
	cfg.Regions = []*pb.Region{{Name: "us-east"}, {Name: "ap-south"}, {Name: "eu-west"}} // kept as given
	slices.Reverse(cfg.Cells)
	slices.Reverse(cfg.Placements)
	s := New()
	mustChange(t, s, 1, applyConfigCmd(cfg))
	got, rev := s.Freeze().Config(), s.Freeze().Revision()
	if rev != 1 {
		t.Fatalf("revision %d", rev)
	}
	var regions, cells, placements []string
	for _, r := range got.GetRegions() {
		regions = append(regions, r.GetName())
	}
	for _, c := range got.GetCells() {
		cells = append(cells, c.GetId())
	}
	for _, p := range got.GetPlacements() {
		placements = append(placements, p.GetKey())
	}
	if !slices.Equal(regions, []string{"us-east", "ap-south", "eu-west"}) ||
		!slices.Equal(cells, []string{"c1", "c2", "spare"}) ||
		!slices.Equal(placements, []string{"tenant-a", "tenant-b"}) {
		t.Fatalf("order: regions %v cells %v placements %v", regions, cells, placements)
	}
}

// TestReadsDuringApply reads while a writer applies; every read must see one
// consistent revision (run with -race).
func TestReadsDuringApply(t *testing.T) {
	s := configured(t)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				st := s.Freeze().State()
				cells := map[string]bool{}
				for _, c := range st.GetConfig().GetCells() {
					cells[c.GetId()] = true
				}
				for _, p := range st.GetConfig().GetPlacements() {
					if !cells[p.GetCell()] || p.GetModRevision() > st.GetRevision() {
						t.Errorf("snapshot at %d holds placement %v", st.GetRevision(), p)
						return
					}
				}
				s.Freeze().Placements("k", "", 10)
				s.Freeze().Cell("c1")
			}
		}()
	}
	index := uint64(10)
	for i := 0; i < 300; i++ {
		cell := fmt.Sprintf("x%d", i)
		index++
		mustChange(t, s, index, putCellCmd(&pb.Cell{Id: cell}))
		index++
		mustChange(t, s, index, putPlacementCmd(fmt.Sprintf("k%d", i), cell))
		if i > 0 {
			index++
			mustChange(t, s, index, deletePlacementCmd(fmt.Sprintf("k%d", i-1)))
			index++
			mustChange(t, s, index, deleteCellCmd(fmt.Sprintf("x%d", i-1)))
		}
	}
	close(done)
	wg.Wait()
}
