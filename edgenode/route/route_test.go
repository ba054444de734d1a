package route

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func ep(id, region string, weight uint32) *pb.Endpoint {
	return &pb.Endpoint{Id: id, Url: "http://" + id + ".example:8080/base/", Region: region, Weight: weight}
}

// testState has three regions with latencies given in mixed directions:
// us-east<->eu-west 40 (given once), us-east->ap-south 90 explicitly while the
// reverse says 10, eu-west<->ap-south 60; "mars" has no latency entry.
func testState() *pb.State {
	return &pb.State{
		Revision: 7,
		Config: &pb.RoutingConfig{
			Regions: []*pb.Region{{Name: "us-east"}, {Name: "eu-west"}, {Name: "ap-south"}, {Name: "mars"}},
			Latencies: []*pb.Latency{
				{From: "eu-west", To: "us-east", OneWayMs: 40},
				{From: "us-east", To: "ap-south", OneWayMs: 90},
				{From: "ap-south", To: "us-east", OneWayMs: 10},
				{From: "eu-west", To: "ap-south", OneWayMs: 60},
			},
			Cells: []*pb.Cell{
				{Id: "everywhere", Endpoints: []*pb.Endpoint{
					ep("m1", "mars", 1), ep("ap1", "ap-south", 1), ep("eu1", "eu-west", 1), ep("us1", "us-east", 1),
				}},
				{Id: "far", Endpoints: []*pb.Endpoint{ep("far-m", "mars", 1), ep("far-ap", "ap-south", 1), ep("far-eu", "eu-west", 1)}},
				{Id: "weighted", Endpoints: []*pb.Endpoint{ep("w1", "us-east", 1), ep("w2", "us-east", 3), ep("w0", "us-east", 0)}},
				{Id: "empty"},
			},
			Placements: []*pb.Placement{
				{Key: "acme", Cell: "everywhere"},
				{Key: "far-co", Cell: "far"},
				{Key: "heavy", Cell: "weighted"},
				{Key: "nobody", Cell: "empty"},
			},
		},
		Members: []*pb.Member{{Name: "c1", Region: "us-east", GrpcAddr: "127.0.0.1:7101"}},
	}
}

func mustBuild(t testing.TB, region string, st *pb.State) *Table {
	t.Helper()
	tb, err := Build(region, st)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return tb
}

// walk returns the ids of every candidate in fallback order.
func walk(c *Cell, rnd uint64) []string {
	var out []string
	it := c.Candidates(rnd)
	for e := it.Next(); e != nil; e = it.Next() {
		out = append(out, e.ID)
	}
	return out
}

func TestRoutingDecisions(t *testing.T) {
	st := testState()
	withDefault := testState()
	withDefault.Config.DefaultCell = "far"
	tests := []struct {
		name   string
		region string
		state  *pb.State
		key    string
		want   []string // fallback order; nil means no cell
	}{
		{"own region first", "us-east", st, "acme", []string{"us1", "eu1", "ap1", "m1"}},
		{"explicit direction wins over reverse", "us-east", st, "acme", []string{"us1", "eu1", "ap1", "m1"}},
		{"pair given once applies both ways", "eu-west", st, "acme", []string{"eu1", "us1", "ap1", "m1"}},
		{"reverse entry used when no explicit one", "ap-south", st, "acme", []string{"ap1", "us1", "eu1", "m1"}},
		{"nearest other region when own has none", "us-east", st, "far-co", []string{"far-eu", "far-ap", "far-m"}},
		{"region without latency goes last by name", "mars", st, "acme", []string{"m1", "ap1", "eu1", "us1"}},
		{"unknown key without default cell", "us-east", st, "nope", nil},
		{"unknown key uses default cell", "us-east", withDefault, "nope", []string{"far-eu", "far-ap", "far-m"}},
		{"placement wins over default cell", "us-east", withDefault, "acme", []string{"us1", "eu1", "ap1", "m1"}},
		{"empty cell yields no endpoint", "us-east", st, "nobody", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustBuild(t, tc.region, tc.state)
			c := tb.Lookup([]byte(tc.key))
			if c != tb.LookupString(tc.key) {
				t.Fatalf("Lookup and LookupString disagree for %q", tc.key)
			}
			if tc.want == nil {
				if c != nil {
					t.Fatalf("key %q: got cell %q, want none", tc.key, c.ID())
				}
				return
			}
			if c == nil {
				t.Fatalf("key %q: no cell", tc.key)
			}
			if got := walk(c, 0); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("key %q from %s: order %v, want %v", tc.key, tc.region, got, tc.want)
			}
		})
	}
}

func TestCandidatesVisitEveryEndpointOnceWithinRegionFirst(t *testing.T) {
	st := testState()
	st.Config.Cells = append(st.Config.Cells, &pb.Cell{Id: "multi", Endpoints: []*pb.Endpoint{
		ep("a", "us-east", 1), ep("b", "us-east", 5), ep("c", "eu-west", 2), ep("d", "us-east", 1), ep("e", "eu-west", 1),
	}})
	tb := mustBuild(t, "us-east", st)
	c := tb.Cell("multi")
	for rnd := range uint64(50) {
		got := walk(c, rnd*0x9e3779b97f4a7c15)
		if len(got) != 5 {
			t.Fatalf("rnd %d: %v, want 5 endpoints", rnd, got)
		}
		us, eu := slices.Clone(got[:3]), slices.Clone(got[3:])
		slices.Sort(us)
		slices.Sort(eu)
		if !slices.Equal(us, []string{"a", "b", "d"}) || !slices.Equal(eu, []string{"c", "e"}) {
			t.Fatalf("rnd %d: %v: own region's endpoints must all come before eu-west's", rnd, got)
		}
	}
}

func TestWeightsDistribution(t *testing.T) {
	tb := mustBuild(t, "us-east", testState())
	c := tb.LookupString("heavy")
	const picks = 200_000
	counts := map[string]int{}
	r := rand.New(rand.NewPCG(1, 2))
	for range picks {
		it := c.Candidates(r.Uint64())
		counts[it.Next().ID]++
	}
	// Weights 1, 3 and 0 (which means 1): shares 1/5, 3/5, 1/5.
	want := map[string]float64{"w1": 0.2, "w2": 0.6, "w0": 0.2}
	for id, share := range want {
		got := float64(counts[id]) / picks
		if math.Abs(got-share) > 0.01 {
			t.Errorf("endpoint %s picked %.3f of the time, want %.2f±0.01 (counts %v)", id, got, share, counts)
		}
	}
}

func TestEndpointURLParts(t *testing.T) {
	st := testState()
	st.Config.Cells = []*pb.Cell{{Id: "x", Endpoints: []*pb.Endpoint{
		{Id: "plain", Url: "http://10.0.0.1", Region: "us-east"},
		{Id: "tls", Url: "https://api.example/v1//", Region: "us-east"},
		{Id: "v6", Url: "http://[::1]:9000/p", Region: "us-east"},
	}}}
	st.Config.Placements = nil
	c := mustBuild(t, "us-east", st).Cell("x")
	got := map[string]*Endpoint{}
	it := c.Candidates(0)
	for e := it.Next(); e != nil; e = it.Next() {
		got[e.ID] = e
	}
	check := func(id, addr, host, prefix, pool string, tls bool) {
		e := got[id]
		if e.Addr != addr || e.Host != host || e.PathPrefix != prefix || e.PoolKey != pool || e.TLS != tls || e.Tag != id+"@us-east" {
			t.Errorf("%s: got %+v", id, *e)
		}
	}
	check("plain", "10.0.0.1:80", "10.0.0.1", "", "http://10.0.0.1:80", false)
	check("tls", "api.example:443", "api.example", "/v1", "https://api.example:443", true)
	check("v6", "[::1]:9000", "[::1]:9000", "/p", "http://[::1]:9000", false)
}

func TestBuildRejectsInvalidState(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*pb.State)
		want   error
	}{
		{"placement to missing cell", func(s *pb.State) {
			s.Config.Placements = append(s.Config.Placements, &pb.Placement{Key: "k", Cell: "ghost"})
		}, ErrUnknownCell},
		{"default cell missing", func(s *pb.State) { s.Config.DefaultCell = "ghost" }, ErrUnknownCell},
		{"bad scheme", func(s *pb.State) { s.Config.Cells[0].Endpoints[0].Url = "ftp://x" }, ErrInvalidEndpoint},
		{"no host", func(s *pb.State) { s.Config.Cells[0].Endpoints[0].Url = "http:///path" }, ErrInvalidEndpoint},
		{"endpoint without id", func(s *pb.State) { s.Config.Cells[0].Endpoints[0].Id = "" }, ErrInvalidEndpoint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := testState()
			tc.mutate(st)
			if _, err := Build("us-east", st); !errors.Is(err, tc.want) {
				t.Fatalf("Build: %v, want %v", err, tc.want)
			}
		})
	}
}

func change(rev uint64, evs ...*pb.Event) *pb.Change { return &pb.Change{Revision: rev, Events: evs} }
func putPlacement(k, c string) *pb.Event {
	return &pb.Event{Kind: &pb.Event_PutPlacement{PutPlacement: &pb.Placement{Key: k, Cell: c}}}
}
func delPlacement(k string) *pb.Event {
	return &pb.Event{Kind: &pb.Event_DeletePlacement{DeletePlacement: k}}
}
func putCell(c *pb.Cell) *pb.Event     { return &pb.Event{Kind: &pb.Event_PutCell{PutCell: c}} }
func delCell(id string) *pb.Event      { return &pb.Event{Kind: &pb.Event_DeleteCell{DeleteCell: id}} }
func topo(t *pb.Topology) *pb.Event    { return &pb.Event{Kind: &pb.Event_SetTopology{SetTopology: t}} }
func putMember(m *pb.Member) *pb.Event { return &pb.Event{Kind: &pb.Event_PutMember{PutMember: m}} }
func delMember(n string) *pb.Event     { return &pb.Event{Kind: &pb.Event_DeleteMember{DeleteMember: n}} }

// snapshot captures what a user of a table can observe, to prove that an old
// table is unchanged after a change was applied to it.
func snapshot(tb *Table) string {
	var keys []string
	tb.RangePlacements(func(k, c string) bool { keys = append(keys, k+"="+c); return true })
	slices.Sort(keys)
	cells := tb.CellIDs()
	slices.Sort(cells)
	var orders []string
	for _, id := range cells {
		orders = append(orders, fmt.Sprint(id, walk(tb.Cell(id), 0)))
	}
	var members []string
	for _, m := range tb.Members() {
		members = append(members, m.GetName())
	}
	def := ""
	if c := tb.DefaultCell(); c != nil {
		def = c.ID()
	}
	return fmt.Sprint(tb.Revision(), keys, orders, members, def, tb.Placements())
}

func TestApplyCopiesOnWrite(t *testing.T) {
	base := mustBuild(t, "us-east", testState())
	before := snapshot(base)
	tests := []struct {
		name  string
		ch    *pb.Change
		check func(t *testing.T, nt *Table)
	}{
		{"breaker and health statuses are accepted", change(8,
			&pb.Event{Kind: &pb.Event_PutBreaker{PutBreaker: &pb.BreakerStatus{Endpoint: "f1"}}},
			&pb.Event{Kind: &pb.Event_PutHealth{PutHealth: &pb.HealthStatus{Endpoint: "f1"}}}), func(t *testing.T, nt *Table) {
			if nt.Revision() != 8 || snapshot(nt) != snapshot(base.WithRevision(8)) {
				t.Fatalf("revision %d, table %s", nt.Revision(), snapshot(nt))
			}
		}},
		{"move placement", change(8, putPlacement("acme", "far")), func(t *testing.T, nt *Table) {
			if c := nt.LookupString("acme"); c.ID() != "far" {
				t.Fatalf("acme -> %s, want far", c.ID())
			}
		}},
		{"add and delete placements", change(8, putPlacement("new", "weighted"), delPlacement("heavy"), delPlacement("never-existed")), func(t *testing.T, nt *Table) {
			if nt.LookupString("new").ID() != "weighted" || nt.LookupString("heavy") != nil || nt.Placements() != 4 {
				t.Fatalf("got %s", snapshot(nt))
			}
		}},
		{"new cell then placement in one change", change(8, putCell(&pb.Cell{Id: "fresh", Endpoints: []*pb.Endpoint{ep("f1", "eu-west", 1)}}), putPlacement("acme", "fresh")), func(t *testing.T, nt *Table) {
			if got := walk(nt.LookupString("acme"), 0); !slices.Equal(got, []string{"f1"}) {
				t.Fatalf("acme candidates %v", got)
			}
		}},
		{"replace cell endpoints", change(8, putCell(&pb.Cell{Id: "everywhere", Endpoints: []*pb.Endpoint{ep("only", "ap-south", 1)}})), func(t *testing.T, nt *Table) {
			if got := walk(nt.LookupString("acme"), 0); !slices.Equal(got, []string{"only"}) {
				t.Fatalf("acme candidates %v", got)
			}
		}},
		{"move placements away then delete cell", change(8, putPlacement("nobody", "far"), delCell("empty")), func(t *testing.T, nt *Table) {
			if nt.Cell("empty") != nil || nt.LookupString("nobody").ID() != "far" {
				t.Fatalf("got %s", snapshot(nt))
			}
		}},
		{"topology change reorders regions", change(8, topo(&pb.Topology{Latencies: []*pb.Latency{{From: "us-east", To: "ap-south", OneWayMs: 1}, {From: "us-east", To: "eu-west", OneWayMs: 2}}, DefaultCell: "far"})), func(t *testing.T, nt *Table) {
			if got := walk(nt.LookupString("acme"), 0); !slices.Equal(got, []string{"us1", "ap1", "eu1", "m1"}) {
				t.Fatalf("acme candidates %v", got)
			}
			if nt.LookupString("unknown").ID() != "far" {
				t.Fatalf("default cell not applied")
			}
		}},
		{"members", change(8, putMember(&pb.Member{Name: "c2", Region: "eu-west"}), delMember("c1")), func(t *testing.T, nt *Table) {
			if len(nt.Members()) != 1 || nt.Members()[0].GetName() != "c2" {
				t.Fatalf("members %v", nt.Members())
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nt, err := base.Apply(tc.ch)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if nt.Revision() != tc.ch.GetRevision() {
				t.Fatalf("revision %d, want %d", nt.Revision(), tc.ch.GetRevision())
			}
			tc.check(t, nt)
			if after := snapshot(base); after != before {
				t.Fatalf("old table changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestApplyRejectsBadChangesAtomically(t *testing.T) {
	base := mustBuild(t, "us-east", testState())
	before := snapshot(base)
	tests := []struct {
		name string
		ch   *pb.Change
		want error
	}{
		{"placement to unknown cell", change(8, putPlacement("acme", "ghost")), ErrUnknownCell},
		{"delete cell still in use", change(8, putPlacement("x", "far"), delCell("everywhere")), ErrUnknownCell},
		{"default cell deleted", change(8, topo(&pb.Topology{DefaultCell: "far"}), delPlacement("far-co"), delCell("far")), ErrUnknownCell},
		{"bad endpoint url", change(8, putCell(&pb.Cell{Id: "bad", Endpoints: []*pb.Endpoint{{Id: "b", Url: "::"}}})), ErrInvalidEndpoint},
		{"empty event", change(8, &pb.Event{}), ErrInvalidEvent},
		{"stale revision", change(7, putPlacement("acme", "far")), ErrStaleRevision},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := base.Apply(tc.ch); !errors.Is(err, tc.want) {
				t.Fatalf("Apply: %v, want %v", err, tc.want)
			}
			if after := snapshot(base); after != before {
				t.Fatalf("table changed by a rejected change:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// bigState has n placements over 10 cells of 6 endpoints in 3 regions.
func bigState(n int) *pb.State {
	st := testState()
	st.Config.Cells = nil
	st.Config.Placements = make([]*pb.Placement, 0, n)
	for c := range 10 {
		cell := &pb.Cell{Id: fmt.Sprintf("cell-%d", c)}
		for e := range 6 {
			cell.Endpoints = append(cell.Endpoints, ep(fmt.Sprintf("c%d-e%d", c, e), []string{"us-east", "eu-west", "ap-south"}[e%3], uint32(e)))
		}
		st.Config.Cells = append(st.Config.Cells, cell)
	}
	for i := range n {
		st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: fmt.Sprintf("tenant-%07d", i), Cell: fmt.Sprintf("cell-%d", i%10)})
	}
	return st
}

func TestApplyLeavesUntouchedBucketsShared(t *testing.T) {
	base := mustBuild(t, "us-east", bigState(100_000))
	nt, err := base.Apply(change(8, putPlacement("tenant-0000001", "cell-5")))
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	for i := range base.buckets {
		if fmt.Sprintf("%p", base.buckets[i]) == fmt.Sprintf("%p", nt.buckets[i]) {
			shared++
		}
	}
	if shared != numBuckets-1 {
		t.Fatalf("%d of %d placement buckets shared after a one-placement change, want all but one", shared, numBuckets)
	}
	if c, _ := base.Placement("tenant-0000001"); c != "cell-1" {
		t.Fatalf("old table sees %s", c)
	}
	if c, _ := nt.Placement("tenant-0000001"); c != "cell-5" {
		t.Fatalf("new table sees %s", c)
	}
}

func BenchmarkRoute(b *testing.B) {
	tb := mustBuild(b, "us-east", bigState(100_000))
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "tenant-%07d", (i*7919)%100_000)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for i := 0; b.Loop(); i++ {
		c := tb.Lookup(keys[i&1023])
		it := c.Candidates(rand.Uint64())
		if e := it.Next(); e != nil {
			n++
		}
	}
	if n == 0 {
		b.Fatal("no endpoint chosen")
	}
}

func BenchmarkApplyOnePlacement(b *testing.B) {
	tb := mustBuild(b, "us-east", bigState(100_000))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		nt, err := tb.Apply(change(tb.Revision()+1, putPlacement(fmt.Sprintf("tenant-%07d", i%100_000), "cell-3")))
		if err != nil {
			b.Fatal(err)
		}
		tb = nt
	}
}
