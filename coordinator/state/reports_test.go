package state

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func batch(id uint64, cmd *pb.Command) *pb.Command {
	switch op := cmd.GetOp().(type) {
	case *pb.Command_ReportOutcomes:
		op.ReportOutcomes.BatchId = id
	case *pb.Command_ReportHealth:
		op.ReportHealth.BatchId = id
	}
	return cmd
}

func breakerState(t testing.TB, s *Store, endpoint string) pb.BreakerState {
	t.Helper()
	return breakerOf(t, s, endpoint).GetState()
}

// A retried outcome batch (same edge, same id) is acknowledged and counts
// nothing; the same id from another edge, or a new id, counts.
func TestRetriedOutcomeBatchCountsOnce(t *testing.T) {
	s := withBreakers(t) // c1: 3 consecutive failures open the breaker
	mustQuiet(t, s, 11, at(0, batch(7, outcomesCmd("e1", connectErrors("c1-use", 2)))))
	for i := range 3 {
		mustQuiet(t, s, uint64(12+i), at(time.Duration(i+1)*time.Millisecond, batch(7, outcomesCmd("e1", connectErrors("c1-use", 2)))))
	}
	if got := breakerState(t, s, "c1-use"); got != pb.BreakerState_BREAKER_STATE_CLOSED {
		t.Fatalf("after one batch of 2 failures sent 4 times the breaker is %v; want closed (counted once)", got)
	}
	if o, h, ok := s.Freeze().ReportBatches("e1"); !ok || o != 7 || h != 0 {
		t.Fatalf("e1's batches %d/%d (held %v); want outcomes 7, health 0", o, h, ok)
	}
	// Another edge may draw the same id: its batch is its own.
	ch := mustChange(t, s, 20, at(10*time.Millisecond, batch(7, outcomesCmd("e2", connectErrors("c1-use", 1)))))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_OPEN")
}

func TestNewOutcomeBatchCounts(t *testing.T) {
	s := withBreakers(t)
	mustQuiet(t, s, 11, at(0, batch(7, outcomesCmd("e1", connectErrors("c1-use", 2)))))
	ch := mustChange(t, s, 12, at(time.Millisecond, batch(8, outcomesCmd("e1", connectErrors("c1-use", 1)))))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_OPEN")
	// A retry of 8 after it opened the breaker changes nothing either.
	mustQuiet(t, s, 13, at(2*time.Millisecond, batch(8, outcomesCmd("e1", connectErrors("c1-use", 1)))))
	if got := breakerOf(t, s, "c1-use"); got.GetModRevision() != 12 || got.GetTrips() != 1 {
		t.Fatalf("breaker %v after a retry; want the trip of revision 12 only", got)
	}
}

// batch_id 0 is not deduplicated: old edges keep working, every batch counts.
func TestUnnumberedBatchesAlwaysCount(t *testing.T) {
	s := withBreakers(t)
	mustQuiet(t, s, 11, at(0, outcomesCmd("e1", connectErrors("c1-use", 2))))
	ch := mustChange(t, s, 12, at(time.Millisecond, outcomesCmd("e1", connectErrors("c1-use", 2))))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_OPEN")
	if _, _, ok := s.Freeze().ReportBatches("e1"); ok {
		t.Fatal("an unnumbered batch left a record")
	}
}

// A refused batch counted nothing, so it is not remembered: the same id
// with valid content counts.
func TestRefusedBatchIsNotRemembered(t *testing.T) {
	s := withBreakers(t)
	mustRefuse(t, s, 11, at(0, batch(5, outcomesCmd("e1", connectErrors("c1-use", 2), connectErrors("nope", 1)))),
		pb.CommandError_CODE_NOT_FOUND, "outcomes[1].endpoint")
	mustQuiet(t, s, 12, at(0, batch(5, outcomesCmd("e1", connectErrors("c1-use", 2)))))
	ch := mustChange(t, s, 13, at(time.Millisecond, batch(6, outcomesCmd("e1", connectErrors("c1-use", 1)))))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_OPEN")
}

// A retry is recognised before the endpoints are checked: the batch
// committed, the config then dropped an endpoint, and the retry must be
// acknowledged rather than refused (the edge would count it again later).
func TestRetryAfterTheEndpointLeftIsAcknowledged(t *testing.T) {
	s := withBreakers(t)
	mustQuiet(t, s, 11, at(0, batch(5, outcomesCmd("e1", connectErrors("c2-aps", 1)))))
	cfg := breakerConfig()
	cfg.Cells[1].Endpoints = nil
	cfg.Placements = cfg.Placements[:1]
	mustChange(t, s, 12, applyConfigCmd(cfg))
	mustQuiet(t, s, 13, at(time.Millisecond, batch(5, outcomesCmd("e1", connectErrors("c2-aps", 1)))))
}

// Health batches are numbered apart from outcome batches: a retried health
// batch counts once, and the two kinds do not shadow each other.
func TestRetriedHealthBatchCountsOnce(t *testing.T) {
	s := withBreakers(t) // c1: unhealthy after 2 failed checks
	mustQuiet(t, s, 11, at(0, batch(9, checksCmd("e1", "us-east", "c1-use", false))))
	mustQuiet(t, s, 12, at(time.Millisecond, batch(9, checksCmd("e1", "us-east", "c1-use", false))))
	// An outcome batch with the same id is another kind: it counts.
	mustQuiet(t, s, 13, at(2*time.Millisecond, batch(9, outcomesCmd("e1", connectErrors("c1-use", 1)))))
	if o, h, _ := s.Freeze().ReportBatches("e1"); o != 9 || h != 9 {
		t.Fatalf("e1's batches %d/%d; want 9/9", o, h)
	}
	eps := s.Freeze().Health()
	for _, ep := range eps {
		if ep.GetStatus().GetEndpoint() == "c1-use" && ep.GetStatus().GetVerdict() == pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY {
			t.Fatalf("c1-use health %v after one failed check sent twice; want not unhealthy", ep)
		}
	}
	ch := mustChange(t, s, 14, at(3*time.Millisecond, batch(10, checksCmd("e1", "us-east", "c1-use", false))))
	wantEvents(t, ch, "put_health:c1-use=HEALTH_VERDICT_UNHEALTHY")
}

// The records travel in raft snapshots: a member restored from one still
// recognises a retry of a batch counted before the snapshot.
func TestSnapshotCarriesReportBatches(t *testing.T) {
	s := withBreakers(t)
	mustQuiet(t, s, 11, at(0, batch(7, outcomesCmd("e1", connectErrors("c1-use", 2)))))
	mustQuiet(t, s, 12, at(time.Millisecond, batch(3, checksCmd("e2", "eu-west", "c1-euw", false))))
	r, decoded := viaRaftSnapshot(t, s, 12)
	if n := len(decoded.GetReportBatches()); n != 2 {
		t.Fatalf("snapshot holds %d report records; want 2", n)
	}
	for _, st := range []*Store{s, r} {
		mustQuiet(t, st, 13, at(2*time.Millisecond, batch(7, outcomesCmd("e1", connectErrors("c1-use", 2)))))
		if got := breakerState(t, st, "c1-use"); got != pb.BreakerState_BREAKER_STATE_CLOSED {
			t.Fatalf("a retry across the snapshot opened the breaker (%v)", got)
		}
		ch := mustChange(t, st, 14, at(3*time.Millisecond, batch(8, outcomesCmd("e1", connectErrors("c1-use", 1)))))
		wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_OPEN")
	}
	a, _ := s.Freeze().Snapshot(14)
	b, _ := r.Freeze().Snapshot(14)
	if !proto.Equal(a, b) {
		t.Fatalf("original and restored replicas diverged:\n%v\n%v", a, b)
	}

	refusesRestore(t, decoded, map[string]func(*pb.Snapshot){
		"no edge":   func(x *pb.Snapshot) { x.ReportBatches[0].Edge = "" },
		"duplicate": func(x *pb.Snapshot) { x.ReportBatches = append(x.ReportBatches, x.ReportBatches[0]) },
	})
}

// A record lives ReportRetryHorizon after the edge's last counted report;
// the leader's Tick then forgets it.
func TestReportRecordsAreReaped(t *testing.T) {
	s := New()
	mustChange(t, s, 10, applyConfigCmd(baseConfig())) // no breaker or health deadlines
	mustQuiet(t, s, 11, at(0, batch(7, outcomesCmd("e1", connectErrors("c1-use", 1)))))
	mustQuiet(t, s, 12, at(time.Minute, batch(8, outcomesCmd("e2", connectErrors("c1-use", 1)))))
	d, ok := s.Freeze().NextDeadline()
	if want := t0.Add(ReportRetryHorizon); !ok || !d.Equal(want) {
		t.Fatalf("next deadline %v (%v); want %v, when e1's record expires", d, ok, want)
	}
	mustQuiet(t, s, 13, at(ReportRetryHorizon-time.Millisecond, tickCmd()))
	if _, _, ok := s.Freeze().ReportBatches("e1"); !ok {
		t.Fatal("e1's record was reaped before the horizon")
	}
	mustQuiet(t, s, 14, at(ReportRetryHorizon, tickCmd()))
	if _, _, ok := s.Freeze().ReportBatches("e1"); ok {
		t.Fatal("e1's record outlived the horizon")
	}
	if _, _, ok := s.Freeze().ReportBatches("e2"); !ok {
		t.Fatal("e2's record was reaped with e1's")
	}
	// Reporting again starts a new horizon from the latest report.
	mustQuiet(t, s, 15, at(ReportRetryHorizon+time.Second, batch(9, outcomesCmd("e2", connectErrors("c1-use", 1)))))
	if d, _ := s.Freeze().NextDeadline(); !d.Equal(t0.Add(2*ReportRetryHorizon + time.Second)) {
		t.Fatalf("next deadline %v; want e2's renewed horizon", d)
	}
}

// At most MaxReportRecords edges are remembered; a new edge takes the place
// of the one that reported longest ago.
func TestReportRecordsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the table")
	}
	s := New()
	mustChange(t, s, 10, applyConfigCmd(baseConfig()))
	idx := uint64(11)
	for i := range MaxReportRecords + 1 {
		s.Apply(idx, at(time.Duration(i)*time.Millisecond, batch(1, outcomesCmd(fmt.Sprintf("e%06d", i), connectErrors("c1-use", 1)))))
		idx++
	}
	if _, _, ok := s.Freeze().ReportBatches("e000000"); ok {
		t.Fatal("the oldest edge's record was kept past the bound")
	}
	for _, e := range []string{"e000001", fmt.Sprintf("e%06d", MaxReportRecords)} {
		if _, _, ok := s.Freeze().ReportBatches(e); !ok {
			t.Fatalf("%s's record was dropped", e)
		}
	}
	if snap, _ := s.Freeze().Snapshot(idx); len(snap.GetReportBatches()) != MaxReportRecords {
		t.Fatalf("%d records held; want %d", len(snap.GetReportBatches()), MaxReportRecords)
	}
}
