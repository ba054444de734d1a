package watch

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// bigState is a state of n placements, n/10 keys and a few cells, some
// megabytes encoded.
func bigState(rev uint64, n int) *pb.State {
	st := &pb.State{Revision: rev, ClusterId: "c-1", Members: []*pb.Member{{Name: "n1", Region: "r"}},
		Config: &pb.RoutingConfig{Regions: []*pb.Region{{Name: "r"}}, DefaultCell: "cell-0"}}
	for i := range 3 {
		st.Config.Cells = append(st.Config.Cells, &pb.Cell{Id: fmt.Sprintf("cell-%d", i),
			Endpoints: []*pb.Endpoint{{Id: fmt.Sprintf("e%d", i), Url: "http://10.0.0.1", Region: "r"}}})
	}
	for i := range n {
		st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: fmt.Sprintf("tenant-%08d", i), Cell: "cell-1", CreateRevision: 7, ModRevision: 9})
	}
	for i := range n / 10 {
		st.Keys = append(st.Keys, &pb.ApiKey{Id: fmt.Sprintf("k%06d", i), Secrets: []*pb.KeySecret{{Secret: "sk_0123456789abcdef0123456789abcdef"}}})
	}
	return st
}

// TestResetInParts: a watcher that takes resets in parts gets the state in
// parts of at most PartBytes, numbered in order, the last marked, which
// together are the state; one that does not gets it whole.
func TestResetInParts(t *testing.T) {
	st := bigState(5, 200_000)
	if n := proto.Size(st); n < 4*PartBytes {
		t.Fatalf("test state of %d bytes is too small to need parts", n)
	}
	h := NewHub(Options{ProgressInterval: time.Hour}, func() *pb.State { return st }, 5)

	w := watchWith(t, h, &pb.WatchRequest{ResetInParts: true}, 1000)
	got := &pb.State{Config: &pb.RoutingConfig{}}
	for i := 0; ; i++ {
		m := w.next(t)
		p := m.GetResetPart()
		if p == nil || int(p.GetIndex()) != i {
			t.Fatalf("message %d: %v, want reset part %d", i, m.GetKind(), i)
		}
		if n := proto.Size(m); n > PartBytes+64 {
			t.Fatalf("part %d is %d bytes, over %d", i, n, PartBytes)
		}
		ps := p.GetState()
		if i == 0 {
			got.Revision, got.ClusterId, got.Members = ps.GetRevision(), ps.GetClusterId(), ps.GetMembers()
			got.Config.Regions, got.Config.DefaultCell = ps.GetConfig().GetRegions(), ps.GetConfig().GetDefaultCell()
		}
		got.Config.Cells = append(got.Config.Cells, ps.GetConfig().GetCells()...)
		got.Config.Placements = append(got.Config.Placements, ps.GetConfig().GetPlacements()...)
		got.Keys = append(got.Keys, ps.GetKeys()...)
		if p.GetLast() {
			t.Logf("%d bytes in %d parts", proto.Size(st), i+1)
			break
		}
	}
	if !proto.Equal(got, st) {
		t.Fatalf("the parts put together differ from the state (%d placements, %d keys; want %d, %d)",
			len(got.Config.Placements), len(got.Keys), len(st.Config.Placements), len(st.Keys))
	}

	whole := watchWith(t, h, &pb.WatchRequest{}, 10)
	if m := whole.next(t); m.GetReset_() == nil || !proto.Equal(m.GetReset_(), st) {
		t.Fatalf("a watcher without reset_in_parts got %T", m.GetKind())
	}
}

// TestSmallResetIsOnePart: a state that fits is one part, marked last.
func TestSmallResetIsOnePart(t *testing.T) {
	st := bigState(3, 10)
	parts := cutReset(st)
	if len(parts) != 1 || !parts[0].GetResetPart().GetLast() || !proto.Equal(parts[0].GetResetPart().GetState(), st) {
		t.Fatalf("%d parts: %v", len(parts), parts)
	}
}

// TestBigChangeGoesAsAResetInParts: a change larger than PartBytes reaches
// a watcher that takes resets in parts as a reset in parts at least as new;
// smaller changes are batched within PartBytes; a watcher without parts
// gets the change as it is.
func TestBigChangeGoesAsAResetInParts(t *testing.T) {
	big := bigState(0, 200_000)
	var events []*pb.Event
	for _, p := range big.Config.Placements {
		events = append(events, &pb.Event{Kind: &pb.Event_PutPlacement{PutPlacement: p}})
	}
	st := bigState(3, 200_000)
	h := NewHub(Options{ProgressInterval: time.Hour}, func() *pb.State { return st }, 1)
	parted := watchWith(t, h, &pb.WatchRequest{FromRevision: 1, ResetInParts: true}, 1000)
	whole := watchWith(t, h, &pb.WatchRequest{FromRevision: 1}, 1000)
	for _, w := range []*watcher{parted, whole} {
		if m := w.next(t); m.GetProgressRevision() != 1 {
			t.Fatalf("first message %v, want progress at 1", m.GetKind())
		}
	}
	small := strings.Repeat("x", PartBytes/3)
	h.Publish(&pb.Change{Revision: 2, Events: []*pb.Event{{Kind: &pb.Event_DeletePlacement{DeletePlacement: small}}}})
	h.Publish(&pb.Change{Revision: 3, Events: events})

	if m := parted.next(t); len(m.GetChanges().GetChanges()) != 1 || m.GetChanges().GetChanges()[0].GetRevision() != 2 {
		t.Fatalf("parted watcher: a %T of %d bytes, want the small change alone", m.GetKind(), proto.Size(m))
	}
	for i := 0; ; i++ {
		m := parted.next(t)
		p := m.GetResetPart()
		if p == nil || p.GetIndex() != uint32(i) || (i == 0 && p.GetState().GetRevision() != 3) {
			t.Fatalf("parted watcher, message %d: a %T, want part %d of a reset at 3", i, m.GetKind(), i)
		}
		if proto.Size(m) > PartBytes+64 {
			t.Fatalf("part %d of %d bytes", i, proto.Size(m))
		}
		if p.GetLast() {
			break
		}
	}
	// Without parts: the changes as they are (in one batch or two, as the
	// watcher woke).
	for rev := uint64(1); rev < 3; {
		m := whole.next(t)
		chs := m.GetChanges().GetChanges()
		if len(chs) == 0 {
			t.Fatalf("watcher without parts: a %T, want changes", m.GetKind())
		}
		rev = chs[len(chs)-1].GetRevision()
	}
}
