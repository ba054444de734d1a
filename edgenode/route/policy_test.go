package route

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/policy"
)

// A cell's policies are converted when its table is built, not per request:
// a table carries them typed, defaults filled in, and a change that does not
// touch the cell keeps the same converted policy.
func TestCellPoliciesAreConvertedWithTheTable(t *testing.T) {
	st := testState()
	c := st.Config.Cells[0]
	c.Auth = &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC, TimestampWindowS: 60}
	c.Breaker = &pb.BreakerPolicy{LocalConnectFailures: 1, LocalEjectionMs: 700}
	c.PanicThresholdPercent = 30
	tb := mustBuild(t, "us-east", st)

	got := tb.Cell("everywhere").Policy()
	if want := policy.CellOf(c); *got != want {
		t.Fatalf("cell policy %+v, want %+v", *got, want)
	}
	if !got.Auth.HMAC() || got.Auth.Window != time.Minute || got.Auth.MaxBody != policy.DefaultMaxBodyBytes ||
		got.Breaker.LocalEjection != 700*time.Millisecond || got.Breaker.ProbeLease != policy.DefaultProbeLease {
		t.Fatalf("cell policy %+v: want the configured values, the defaults elsewhere", *got)
	}
	if none := tb.Cell("far").Policy(); *none != policy.CellOf(&pb.Cell{}) {
		t.Fatalf("a cell without policies: %+v, want every default", *none)
	}
	// The gates follow the converted breaker policy: one failure trips.
	now := time.Now().UnixNano()
	if g := gateOf(t, tb, "us1"); !g.ConnectFailed(now) || g.Check(now) != LocalTrip {
		t.Fatal("local_connect_failures 1: the first connect failure did not trip the endpoint")
	}

	next := mustApply(t, tb, 8, putPlacement("new-key", "far"))
	if next.Cell("everywhere").Policy() != got {
		t.Fatal("a change that does not touch the cell converted its policies again")
	}
	edited := proto.Clone(c).(*pb.Cell)
	edited.Auth.Mode = pb.AuthMode_AUTH_MODE_JWT
	next = mustApply(t, next, 9, putCell(edited))
	if p := next.Cell("everywhere").Policy(); p.Auth.Mode != pb.AuthMode_AUTH_MODE_JWT || tb.Cell("everywhere").Policy().Auth.Mode != pb.AuthMode_AUTH_MODE_HMAC {
		t.Fatalf("after put_cell: mode %s in the new table, %s in the old; want JWT, HMAC", p.Auth.Mode, tb.Cell("everywhere").Policy().Auth.Mode)
	}
}
