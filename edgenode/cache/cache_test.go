package cache

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func state(rev uint64) *pb.State {
	return &pb.State{
		Revision: rev,
		Config: &pb.RoutingConfig{
			Regions:     []*pb.Region{{Name: "us-east"}, {Name: "eu-west"}},
			Latencies:   []*pb.Latency{{From: "us-east", To: "eu-west", OneWayMs: 40}},
			Cells:       []*pb.Cell{{Id: "c1", Endpoints: []*pb.Endpoint{{Id: "e1", Url: "http://127.0.0.1:1", Region: "eu-west"}}}},
			Placements:  []*pb.Placement{{Key: "a", Cell: "c1"}, {Key: "b", Cell: "c1"}},
			DefaultCell: "c1",
		},
		Members: []*pb.Member{{Name: "n1", Region: "us-east", GrpcAddr: "127.0.0.1:7101"}},
	}
}

// load reads the file the way an edge does at start.
func load(t *testing.T, s *Store) *route.Table {
	t.Helper()
	b := route.NewBuilder("us-east")
	rev, err := s.Load(b)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tb, err := b.Finish(rev)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return tb
}

func describe(tb *route.Table) string {
	var ps []string
	tb.RangePlacements(func(k, c string) bool { ps = append(ps, k+"="+c); return true })
	slices.Sort(ps)
	cells := tb.CellIDs()
	slices.Sort(cells)
	def := ""
	if tb.DefaultCell() != nil {
		def = tb.DefaultCell().ID()
	}
	var members []string
	for _, m := range tb.Members() {
		members = append(members, m.GetName()+"@"+m.GetGrpcAddr())
	}
	return fmt.Sprint("rev=", tb.Revision(), " placements=", ps, " cells=", cells, " default=", def, " members=", members)
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, discard)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestEmptyFileLoadsNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "sub", "edge.db"))
	defer s.Close()
	if tb := load(t, s); tb.Revision() != 0 || tb.Placements() != 0 {
		t.Fatalf("empty file loaded %s", describe(tb))
	}
}

func TestWriteThenReopenRestoresTheSameState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s := open(t, path)
	st := state(10)
	ch1 := &pb.Change{Revision: 12, Events: []*pb.Event{
		{Kind: &pb.Event_PutCell{PutCell: &pb.Cell{Id: "c2", Endpoints: []*pb.Endpoint{{Id: "e2", Url: "http://127.0.0.1:2", Region: "us-east"}}}}},
		{Kind: &pb.Event_PutPlacement{PutPlacement: &pb.Placement{Key: "a", Cell: "c2"}}},
		{Kind: &pb.Event_DeletePlacement{DeletePlacement: "b"}},
		{Kind: &pb.Event_PutMember{PutMember: &pb.Member{Name: "n2", Region: "eu-west", GrpcAddr: "127.0.0.1:7102"}}},
	}}
	ch2 := &pb.Change{Revision: 15, Events: []*pb.Event{
		{Kind: &pb.Event_SetTopology{SetTopology: &pb.Topology{Regions: []*pb.Region{{Name: "us-east"}}}}},
		{Kind: &pb.Event_DeleteMember{DeleteMember: "n1"}},
	}}
	// What the edge would serve, computed in memory.
	want, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	if want, err = want.Apply(ch1); err != nil {
		t.Fatal(err)
	}
	if want, err = want.Apply(ch2); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(Update{Reset: st}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(Update{Changes: []*pb.Change{ch1, ch2}, Revision: 20}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path)
	defer s.Close()
	got := load(t, s)
	if describe(got) != describe(want.WithRevision(20)) {
		t.Fatalf("reloaded %s\nwant     %s", describe(got), describe(want.WithRevision(20)))
	}
}

func TestResetReplacesEverything(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "edge.db"))
	defer s.Close()
	if err := s.Write(Update{Reset: state(10)}); err != nil {
		t.Fatal(err)
	}
	small := &pb.State{Revision: 30, Config: &pb.RoutingConfig{Cells: []*pb.Cell{{Id: "z"}}, Placements: []*pb.Placement{{Key: "only", Cell: "z"}}}}
	if err := s.Write(Update{Reset: small}); err != nil {
		t.Fatal(err)
	}
	if got := describe(load(t, s)); got != "rev=30 placements=[only=z] cells=[z] default= members=[]" {
		t.Fatalf("after reset: %s", got)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s := open(t, path)
	defer s.Close()
	if _, err := Open(path, discard); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestUnreadableFileIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.db")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	defer s.Close()
	if tb := load(t, s); tb.Revision() != 0 {
		t.Fatalf("loaded %s from garbage", describe(tb))
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("garbage not kept aside: %v", aside)
	}
}

func waitWritten(t *testing.T, p *Persister, rev uint64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := p.Written(); got < rev {
			return fmt.Errorf("persister wrote %d, want %d", got, rev)
		}
		return nil
	})
}

func TestPersisterWritesLatestAndSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s := open(t, path)
	p := NewPersister(s, discard, 0)
	p.Reset(state(10))
	for rev := uint64(11); rev <= 40; rev++ {
		p.Append(&pb.Change{Revision: rev, Events: []*pb.Event{
			{Kind: &pb.Event_PutPlacement{PutPlacement: &pb.Placement{Key: fmt.Sprint("k", rev), Cell: "c1"}}},
		}})
	}
	p.Advance(45)
	waitWritten(t, p, 45)
	p.Close()
	s.Close()

	s = open(t, path)
	defer s.Close()
	tb := load(t, s)
	if tb.Revision() != 45 || tb.Placements() != 32 {
		t.Fatalf("after restart: %s", describe(tb))
	}
	if p2 := NewPersister(s, discard, 0); p2.Written() != 45 {
		t.Fatalf("new persister starts at %d, want 45", p2.Written())
	} else {
		p2.Close()
	}
}

func TestPersisterCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s := open(t, path)
	p := NewPersister(s, discard, 0)
	p.Reset(state(10))
	p.Close()
	if rev, err := s.Revision(); err != nil || rev != 10 {
		t.Fatalf("after Close the file is at %d (%v), want 10", rev, err)
	}
	s.Close()
}
