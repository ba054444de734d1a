package loadtest

import (
	"strings"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// The breaker history is rebuilt from a reset and changes, and a request
// routed to an endpoint at a revision where its breaker was open (or
// half-open) is a violation; closed before and after are not.
func TestBreakerLogFindsRoutesToOpenBreakers(t *testing.T) {
	open, half, closed := pb.BreakerState_BREAKER_STATE_OPEN, pb.BreakerState_BREAKER_STATE_HALF_OPEN, pb.BreakerState_BREAKER_STATE_CLOSED
	put := func(rev uint64, ep string, s pb.BreakerState) *pb.WatchResponse {
		return &pb.WatchResponse{Kind: &pb.WatchResponse_Changes{Changes: &pb.ChangeBatch{Changes: []*pb.Change{{
			Revision: rev, Events: []*pb.Event{{Kind: &pb.Event_PutBreaker{PutBreaker: &pb.BreakerStatus{Endpoint: ep, State: s, ModRevision: rev}}}},
		}}}}}
	}
	l := newBreakerLog(nil)
	l.apply(&pb.WatchResponse{Kind: &pb.WatchResponse_Reset_{Reset_: &pb.State{Revision: 10,
		Breakers: []*pb.BreakerStatus{{Endpoint: "a", State: closed, ModRevision: 8}}}}})
	l.apply(put(12, "a", open))
	l.apply(put(15, "a", half))
	l.apply(put(16, "a", closed))
	l.apply(&pb.WatchResponse{Kind: &pb.WatchResponse_ProgressRevision{ProgressRevision: 20}})

	for _, rev := range []string{"10", "11", "16", "20"} {
		l.routedOn("a@us-east", rev)
	}
	l.routedOn("b@eu-west", "13") // never had a breaker: closed
	if inv := l.check(time.Second); !inv.Checked || inv.Violations != 0 {
		t.Fatalf("routes at closed revisions: %+v", inv)
	}
	l.routedOn("a@us-east", "12") // open
	l.routedOn("a@us-east", "15") // half-open
	inv := l.check(time.Second)
	if inv.Violations != 2 || !strings.Contains(inv.Detail, "a at revision 12") || !strings.Contains(inv.Detail, "a at revision 15") {
		t.Fatalf("routes at open and half-open revisions: %+v", inv)
	}
	l.routedOn("a@us-east", "25") // beyond the history
	if inv := l.check(10 * time.Millisecond); !strings.Contains(inv.Detail, "1 beyond the history") {
		t.Fatalf("a route beyond the history: %+v", inv)
	}
}
