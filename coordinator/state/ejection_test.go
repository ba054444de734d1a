package state

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// cappedConfig is baseConfig plus cell "big" with n endpoints big-0, big-1,
// ..., whose breakers open at 3 consecutive failures for 1s, under
// max_ejection_percent percent (0: the default).
func cappedConfig(n int, percent uint32) *pb.RoutingConfig {
	cfg := baseConfig()
	big := &pb.Cell{Id: "big", Breaker: &pb.BreakerPolicy{ConsecutiveFailures: 3, BaseEjectionMs: 1000, MaxEjectionPercent: percent}}
	for i := range n {
		big.Endpoints = append(big.Endpoints, &pb.Endpoint{Id: fmt.Sprintf("big-%d", i), Url: fmt.Sprintf("http://10.1.0.%d", i), Region: "us-east"})
	}
	cfg.Cells = append(cfg.Cells, big)
	return cfg
}

func cappedStore(t testing.TB, n int, percent uint32) *Store {
	t.Helper()
	s := New()
	mustChange(t, s, 10, applyConfigCmd(cappedConfig(n, percent)))
	return s
}

// flood is one edge's report of 5 connect errors on each endpoint of big.
func flood(edge string, n int) *pb.Command {
	var o []*pb.EndpointOutcomes
	for i := range n {
		o = append(o, connectErrors(fmt.Sprintf("big-%d", i), 5))
	}
	return outcomesCmd(edge, o...)
}

// bigStates counts the endpoints of big that breakers keep out (open or
// half-open) and the ones held in by a refused trip.
func bigStates(t testing.TB, s *Store, n int) (out, refused int) {
	t.Helper()
	for i := range n {
		b := breakerOf(t, s, fmt.Sprintf("big-%d", i))
		switch {
		case b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED:
			out++
		case strings.HasPrefix(b.GetReason(), "closed: trip refused"):
			refused++
		}
	}
	return out, refused
}

// A flood of failure reports against every endpoint of a cell opens at most
// max_ejection_percent of them, rounded down; the others stay in, each
// showing the refused trip, and later floods change nothing.
func TestEjectionCapBoundsAFlood(t *testing.T) {
	for _, tc := range []struct {
		name      string
		endpoints int
		percent   uint32
		open      int
	}{
		{"default 50% of 4", 4, 0, 2},
		{"100% of 4", 4, 100, 4},
		{"50% of 2", 2, 50, 1},
		{"50% of 3 rounds down", 3, 50, 1},
		{"default of 1 keeps it in", 1, 0, 0},
		{"25% of 4", 4, 25, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := cappedStore(t, tc.endpoints, tc.percent)
			// One batch naming every endpoint, then more from other edges.
			ch := mustChange(t, s, 11, at(0, flood("e1", tc.endpoints)))
			if got := len(ch.GetEvents()); got != tc.endpoints {
				t.Fatalf("first flood: %d events %v; want one per endpoint (opened or refused)", got, eventKinds(ch))
			}
			for i, edge := range []string{"e2", "e3", "e4"} {
				mustQuiet(t, s, uint64(12+i), at(time.Duration(i+1)*time.Millisecond, flood(edge, tc.endpoints)))
			}
			out, refused := bigStates(t, s, tc.endpoints)
			if out != tc.open || refused != tc.endpoints-tc.open {
				t.Fatalf("%d out, %d refused of %d; want %d open, the rest refused", out, refused, tc.endpoints, tc.open)
			}
			if tc.open < tc.endpoints {
				b := breakerOf(t, s, fmt.Sprintf("big-%d", tc.endpoints-1))
				want := fmt.Sprintf("closed: trip refused (5 consecutive connect errors, last from e1): %d of %d endpoints of cell big are out", tc.open, tc.endpoints)
				if !strings.HasPrefix(b.GetReason(), want) || b.GetModRevision() != 11 || b.GetTrips() != 0 {
					t.Fatalf("held breaker %v; want reason %q at revision 11, no trip", b, want)
				}
			}
		})
	}
}

// A refused endpoint trips once another endpoint of the cell is back in:
// not while that one is half-open (still out of rotation), but at the first
// failure after its probe closed it, its counts having been kept.
func TestRefusedEndpointTripsOnceAnotherCloses(t *testing.T) {
	s := cappedStore(t, 4, 0)
	mustChange(t, s, 11, at(0, flood("e1", 4))) // big-0 and big-1 open, big-2 and big-3 held
	mustChange(t, s, 12, at(1100*time.Millisecond, tickCmd()))
	if b := breakerOf(t, s, "big-0"); b.GetState() != pb.BreakerState_BREAKER_STATE_HALF_OPEN {
		t.Fatalf("big-0 after its ejection: %v; want half-open", b)
	}
	mustQuiet(t, s, 13, at(1200*time.Millisecond, outcomesCmd("e1", connectErrors("big-2", 1))))
	if b := breakerOf(t, s, "big-2"); b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED {
		t.Fatalf("big-2 opened while big-0 and big-1 are half-open: %v", b)
	}
	if res, _ := s.Apply(14, at(1300*time.Millisecond, grantCmd("big-0", "e1"))); !res.GetProbeGranted() {
		t.Fatal("probe lease refused")
	}
	wantEvents(t, mustChange(t, s, 15, at(1400*time.Millisecond, probeCmd("big-0", "e1", true))), "put_breaker:big-0=BREAKER_STATE_CLOSED")
	ch := mustChange(t, s, 16, at(1500*time.Millisecond, outcomesCmd("e2", connectErrors("big-3", 1), connectErrors("big-2", 1))))
	wantEvents(t, ch, "put_breaker:big-3=BREAKER_STATE_OPEN")
	if r := ch.GetEvents()[0].GetPutBreaker().GetReason(); !strings.HasPrefix(r, "opened: 6 consecutive connect errors, last from e2") {
		t.Fatalf("reason %q; want the kept run of 6", r)
	}
	// big-3 took the room big-0 left; big-2 stays held, silently.
	if out, refused := bigStates(t, s, 4); out != 2 || refused != 1 {
		t.Fatalf("%d out, %d refused; want big-1 half-open and big-3 open, big-2 refused", out, refused)
	}
}

// A reset makes room as a probe does, and the cap is read from the config
// in force: raising it lets the held endpoints open, lowering it closes no
// open breaker.
func TestEjectionCapFollowsResetsAndConfig(t *testing.T) {
	s := cappedStore(t, 4, 0)
	mustChange(t, s, 11, at(0, flood("e1", 4)))
	mustChange(t, s, 12, at(time.Millisecond, resetCmd("big-1")))
	wantEvents(t, mustChange(t, s, 13, at(2*time.Millisecond, outcomesCmd("e1", connectErrors("big-2", 1)))), "put_breaker:big-2=BREAKER_STATE_OPEN")

	mustChange(t, s, 14, applyConfigCmd(cappedConfig(4, 100)))
	wantEvents(t, mustChange(t, s, 15, at(3*time.Millisecond, outcomesCmd("e1", connectErrors("big-3", 1)))), "put_breaker:big-3=BREAKER_STATE_OPEN")

	mustChange(t, s, 16, applyConfigCmd(cappedConfig(4, 25)))
	if out, _ := bigStates(t, s, 4); out != 3 {
		t.Fatalf("%d out after lowering the cap; want the 3 open ones left open", out)
	}
	// The reset one, with a fresh run, is refused: 3 of 4 out, 25% allows 1.
	ch := mustChange(t, s, 17, at(4*time.Millisecond, outcomesCmd("e1", connectErrors("big-1", 3))))
	wantEvents(t, ch, "put_breaker:big-1=BREAKER_STATE_CLOSED")
	if r := ch.GetEvents()[0].GetPutBreaker().GetReason(); !strings.HasSuffix(r, "3 of 4 endpoints of cell big are out, and max_ejection_percent 25 allows 1") {
		t.Fatalf("reason %q", r)
	}
}

// capLog is a flood, ejections ending, probes, resets and more floods on a
// 4-endpoint cell at the default cap.
func capLog() []*pb.Command {
	var log []*pb.Command
	add := func(d time.Duration, cmd *pb.Command) { log = append(log, at(d, cmd)) }
	add(0, flood("e1", 4)) // big-0 and big-1 open, big-2 and big-3 held
	add(time.Millisecond, flood("e2", 4))
	add(1100*time.Millisecond, tickCmd())
	add(1200*time.Millisecond, grantCmd("big-1", "e2"))
	add(1300*time.Millisecond, probeCmd("big-1", "e2", false)) // reopens big-1
	add(1400*time.Millisecond, grantCmd("big-0", "e1"))
	add(1500*time.Millisecond, probeCmd("big-0", "e1", true)) // big-0 back in
	add(1600*time.Millisecond, flood("e3", 4))                // big-0, first in the batch, takes the room back
	add(1700*time.Millisecond, resetCmd("big-2"))             // closed with fresh counts
	add(1800*time.Millisecond, outcomesCmd("e1", &pb.EndpointOutcomes{Endpoint: "big-3", Successes: 1}))
	add(1900*time.Millisecond, flood("e4", 4)) // big-2 refused afresh, big-3 silently
	add(5*time.Second, tickCmd())              // big-0 and big-1 half-open, still out
	add(5100*time.Millisecond, flood("e1", 4))
	return log
}

// The same commands give the same state on every replica, and one restored
// from a snapshot in the middle of them (held endpoints included) goes on
// exactly like the one it was taken from.
func TestEjectionCapIsDeterministicAndSurvivesSnapshots(t *testing.T) {
	log := capLog()
	a, b := cappedStore(t, 4, 0), cappedStore(t, 4, 0)
	var restored *Store
	for i, cmd := range log {
		index := uint64(11 + i)
		ra, ca := a.Apply(index, proto.Clone(cmd).(*pb.Command))
		rb, cb := b.Apply(index, proto.Clone(cmd).(*pb.Command))
		if !proto.Equal(ra, rb) || !proto.Equal(ca, cb) {
			t.Fatalf("index %d: replicas disagree:\n%v %v\n%v %v", index, ra, ca, rb, cb)
		}
		if restored != nil {
			rr, cr := restored.Apply(index, proto.Clone(cmd).(*pb.Command))
			if !proto.Equal(ra, rr) || !proto.Equal(ca, cr) {
				t.Fatalf("index %d: restored replica disagrees:\n%v %v\n%v %v", index, ra, ca, rr, cr)
			}
		}
		if i == 1 { // after the floods: two open, two held
			if out, refused := bigStates(t, a, 4); out != 2 || refused != 2 {
				t.Fatalf("before the snapshot: %d out, %d refused; want 2 and 2", out, refused)
			}
			restored, _ = viaRaftSnapshot(t, a, index)
		}
	}
	for name, s := range map[string]*Store{"replica": b, "restored": restored} {
		sa, _ := a.Freeze().Snapshot(0)
		sb, _ := s.Freeze().Snapshot(0)
		if !proto.Equal(sa, sb) {
			t.Fatalf("%s diverged:\n%v\n%v", name, sa, sb)
		}
	}
	if out, refused := bigStates(t, a, 4); out != 2 || refused != 2 {
		t.Fatalf("at the end: %d out, %d refused; want big-0 and big-1 half-open, big-2 and big-3 held", out, refused)
	}
}
