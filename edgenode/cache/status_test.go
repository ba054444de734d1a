package cache

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	bolt "go.etcd.io/bbolt"
)

// An edge that starts from its cache (every coordinator down) knows which
// breakers were open and which endpoints unhealthy, from resets and events.
func TestStatusesSurviveARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s := open(t, path)
	st := state(10)
	st.Config.Cells = append(st.Config.Cells, &pb.Cell{Id: "c2", Endpoints: []*pb.Endpoint{{Id: "e2", Url: "http://127.0.0.1:2", Region: "us-east"}}})
	st.Breakers = []*pb.BreakerStatus{{Endpoint: "e1", State: pb.BreakerState_BREAKER_STATE_OPEN, ModRevision: 9}}
	if err := s.Write(Update{Reset: st}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(Update{Changes: []*pb.Change{{Revision: 11, Events: []*pb.Event{
		{Kind: &pb.Event_PutHealth{PutHealth: &pb.HealthStatus{Endpoint: "e2", Verdict: pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY, ModRevision: 11}}},
	}}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path)
	defer s.Close()
	tb := load(t, s)
	now := time.Now().UnixNano()
	for id, want := range map[string]route.Reason{"e1": route.BreakerOpen, "e2": route.Unhealthy} {
		if got := tb.Gate(id).Check(now); got != want {
			t.Errorf("endpoint %s after restart: %v, want %v", id, got, want)
		}
	}
}

// A file written before the status buckets existed still loads, and takes
// statuses on its next write.
func TestFileWithoutStatusBucketsLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s := open(t, path)
	if err := s.Write(Update{Reset: state(10)}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range statusBuckets {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if tb := load(t, s); tb.Revision() != 10 {
		t.Fatalf("old file loaded %s", describe(tb))
	}
	if err := s.Write(Update{Changes: []*pb.Change{{Revision: 11, Events: []*pb.Event{
		{Kind: &pb.Event_PutBreaker{PutBreaker: &pb.BreakerStatus{Endpoint: "e1", State: pb.BreakerState_BREAKER_STATE_OPEN, ModRevision: 11}}},
	}}}}); err != nil {
		t.Fatal(err)
	}
	if tb := load(t, s); tb.Breaker("e1").GetState() != pb.BreakerState_BREAKER_STATE_OPEN {
		t.Fatalf("breaker after the write: %v", tb.Breaker("e1"))
	}
	s.Close()
}
