package breaker

import (
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

func TestMaxEjectedRoundsDown(t *testing.T) {
	for _, tc := range []struct {
		endpoints int
		percent   uint32
		want      int
	}{
		{4, 0, 2}, // the default, 50
		{4, 50, 2},
		{4, 100, 4},
		{2, 50, 1},
		{3, 50, 1}, // 2 of 3 would be 67%
		{1, 50, 0}, // Envoy would eject it; here it stays in
		{1, 99, 0},
		{1, 100, 1},
		{10, 10, 1},
		{9, 10, 0},
		{4, 1, 0},
		{4, 250, 2}, // invalid: the default, as New does
		{0, 100, 0},
	} {
		if got := (policy.Breaker{MaxEjectionPercent: tc.percent}).MaxEjected(tc.endpoints); got != tc.want {
			t.Errorf("%d endpoints at %d%%: %d may be out, want %d", tc.endpoints, tc.percent, got, tc.want)
		}
	}
}

// room is a Room that counts its calls.
type room struct {
	ok    bool
	calls int
}

func (r *room) check() (bool, string) {
	r.calls++
	if r.ok {
		return true, ""
	}
	return false, "2 of 4 endpoints of cell c1 are out"
}

func TestRefusedTripStaysClosedAndKeepsItsCounts(t *testing.T) {
	b := New(policy.Breaker{})
	full := &room{}
	// Under the threshold the cap is not asked.
	if _, ok := b.ObserveCapped(t0, connects(4, "edge-a"), full.check); ok || full.calls != 0 {
		t.Fatalf("4 failures of 5: changed %v, room asked %d times; want neither", ok, full.calls)
	}
	at := t0.Add(time.Second)
	tr, ok := b.ObserveCapped(at, connects(1, "edge-b"), full.check)
	reason := "closed: trip refused (5 consecutive connect errors, last from edge-b): 2 of 4 endpoints of cell c1 are out"
	if want := (Transition{From: Closed, To: Closed, At: at, Reason: reason}); ok || tr != want {
		t.Fatalf("refused trip returned %+v %v, want %+v false", tr, ok, want)
	}
	st := b.Status()
	if st.State != Closed || !st.TripRefused || st.Trips != 0 || st.Reason != reason || !st.Since.Equal(at) {
		t.Fatalf("status %+v: want closed, trip refused, no trip counted, the refusal's reason and time", st)
	}
	// More failures while full: refused again, and nothing operators see moves.
	for i := range 3 {
		if tr, ok := b.ObserveCapped(at.Add(time.Duration(i+1)*time.Second), connects(5, "edge-c"), full.check); ok || tr != (Transition{}) {
			t.Fatalf("refusal %d returned %+v %v; want nothing", i+2, tr, ok)
		}
	}
	if b.Status() != st {
		t.Fatalf("status moved under repeated refusals: %+v, was %+v", b.Status(), st)
	}
	// Room again: the run was kept, so one more failure opens it.
	free := &room{ok: true}
	tr, ok = b.ObserveCapped(t0.Add(10*time.Second), connects(1, "edge-d"), free.check)
	if !ok || tr.To != Open || free.calls != 1 || !strings.Contains(tr.Reason, "21 consecutive connect errors") {
		t.Fatalf("with room: %+v %v (room asked %d times); want opened by the kept run of 21", tr, ok, free.calls)
	}
	if b.Status().TripRefused {
		t.Fatal("opening did not clear TripRefused")
	}
}

func TestRefusalIsRecordedAgainAfterOpeningOrReset(t *testing.T) {
	full := &room{}
	for name, between := range map[string]func(b *Breaker){
		"reset": func(b *Breaker) { b.Reset(t0.Add(time.Second)) },
		"a trip and a successful probe": func(b *Breaker) {
			b.ObserveCapped(t0.Add(time.Second), connects(1, "edge-a"), (&room{ok: true}).check)
			b.Tick(t0.Add(6 * time.Second))
			b.GrantProbe(t0.Add(6*time.Second), "edge-a")
			b.ProbeResult(t0.Add(6*time.Second), "edge-a", true)
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := New(policy.Breaker{})
			b.ObserveCapped(t0, connects(5, "edge-a"), full.check)
			between(&b)
			if st := b.Status(); st.State != Closed || st.TripRefused {
				t.Fatalf("status %+v: want closed with no refusal", st)
			}
			if tr, ok := b.ObserveCapped(t0.Add(time.Minute), connects(5, "edge-b"), full.check); ok || tr.To != Closed || tr.Reason == "" || !b.Status().TripRefused {
				t.Fatalf("second refusal returned %+v %v, status %+v; want it recorded", tr, ok, b.Status())
			}
		})
	}
}

func TestRateTripIsCappedToo(t *testing.T) {
	b := New(policy.Breaker{})
	tr, _ := b.ObserveCapped(t0, Outcomes{Successes: 10, Status5xx: 10}, (&room{}).check)
	if b.State() != Closed || !strings.HasPrefix(tr.Reason, "closed: trip refused (error rate 50% over 10s (10/20))") {
		t.Fatalf("rate trip under a full cap: %+v, state %s", tr, b.State())
	}
	// The window was kept: a success alone, the rate still at 10/21 < 50%,
	// does not trip; 2 more failures (12/23) do once there is room.
	if _, ok := b.ObserveCapped(t0.Add(time.Second), Outcomes{Successes: 1}, (&room{ok: true}).check); ok {
		t.Fatal("a rate below the threshold tripped")
	}
	if _, ok := b.ObserveCapped(t0.Add(2*time.Second), Outcomes{Status5xx: 2}, (&room{ok: true}).check); !ok {
		t.Fatalf("12 of 23 failed with room did not trip: %+v", b.Status())
	}
}

func TestEncodingKeepsTheRefusalAndReadsOldPolicies(t *testing.T) {
	b := New(policy.Breaker{MaxEjectionPercent: 100})
	b.ObserveCapped(t0, connects(7, "edge-a"), (&room{}).check)
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Breaker
	if err := got.UnmarshalBinary(data); err != nil || got != b || !got.Status().TripRefused {
		t.Fatalf("decoded %+v (%v), want %+v", got, err, b)
	}
	// An encoding from before max_ejection_percent reads it as the default.
	old := strings.Replace(string(data), `,"MaxEjectionPercent":100`, "", 1)
	if old == string(data) {
		t.Fatalf("encoding %s does not name MaxEjectionPercent as expected", data)
	}
	if err := got.UnmarshalBinary([]byte(old)); err != nil || got.Policy().MaxEjectionPercent != policy.DefaultMaxEjectionPercent {
		t.Fatalf("old encoding: %v, policy %+v; want the default percent", err, got.Policy())
	}
}
