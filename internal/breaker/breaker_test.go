package breaker

import (
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

func TestBreakerTransitions(t *testing.T) {
	const s = time.Second
	const ms = time.Millisecond
	tests := []struct {
		name   string
		policy policy.Breaker
		steps  []step
		// What an operator sees at the end. until is checked when the
		// breaker is open: the ejection end, as an offset from t0.
		state  State
		trips  uint32
		reason string
		until  time.Duration
		holder string
	}{
		{
			name: "closed->open: consecutive connect errors", steps: tripAt0,
			state: Open, trips: 1, until: 5 * s,
			reason: "opened: 5 consecutive connect errors, last from edge-a; ejected for 5s (trip 1)",
		},
		{
			name: "closed->open: a run spans batches and edges",
			steps: []step{
				{0, observe(connects(3, "edge-a")), false},
				{100 * ms, observe(Outcomes{Timeouts: 2, Edge: "edge-b"}), true},
			},
			state: Open, trips: 1, until: 5100 * ms,
			reason: "opened: 5 consecutive failures (3 connect errors, 2 timeouts), last from edge-b; ejected for 5s (trip 1)",
		},
		{
			name:  "one failure short stays closed",
			steps: []step{{0, observe(Outcomes{Status5xx: 4}), false}},
			state: Closed,
		},
		{
			name: "a success resets the consecutive count",
			steps: []step{
				{0, observe(Outcomes{Status5xx: 4}), false},
				{1 * s, observe(Outcomes{Successes: 1}), false},
				{2 * s, observe(Outcomes{Status5xx: 4}), false},
			},
			state: Closed,
		},
		{
			name: "successes followed by failures in the same report neither end nor extend the run",
			steps: []step{
				{0, observe(connects(3, "edge-a")), false},
				{100 * ms, observe(Outcomes{Successes: 9, Status5xx: 7, Edge: "edge-b", FailuresFollow: true}), false},
				{100 * ms, observe(Outcomes{Status5xx: 2, Edge: "edge-b"}), true},
			},
			state: Open, trips: 1, until: 5100 * ms,
			reason: "opened: 5 consecutive failures (3 connect errors, 2 5xx), last from edge-b; ejected for 5s (trip 1)",
		},
		{
			name: "a batch with a success ends the run: order inside a batch is unknown",
			steps: []step{
				{0, observe(Outcomes{Status5xx: 4}), false},
				{1 * s, observe(Outcomes{Successes: 1, Status5xx: 3}), false},
				{2 * s, observe(Outcomes{Status5xx: 2}), false},
			},
			state: Closed,
		},
		{
			name: "closed->open: failure rate over the window",
			steps: []step{
				{0, observe(Outcomes{Successes: 5, Status5xx: 10, Edge: "edge-a"}), false},
				{1 * s, observe(Outcomes{Successes: 14, Timeouts: 21, Edge: "edge-b"}), true},
			},
			state: Open, trips: 1, until: 6 * s,
			reason: "opened: error rate 62% over 10s (31/50); ejected for 5s (trip 1)",
		},
		{
			name:  "a rate at the threshold trips",
			steps: []step{{0, observe(Outcomes{Successes: 50, Status5xx: 50}), true}},
			state: Open, trips: 1, until: 5 * s,
			reason: "opened: error rate 50% over 10s (50/100); ejected for 5s (trip 1)",
		},
		{
			name:  "a rate below the threshold does not trip",
			steps: []step{{0, observe(Outcomes{Successes: 51, Status5xx: 49}), false}},
			state: Closed,
		},
		{
			name: "a high rate below MinRequests does not trip",
			steps: []step{
				{0, observe(Outcomes{Successes: 1, Status5xx: 5}), false},
				{1 * s, observe(Outcomes{Successes: 1, Status5xx: 5}), false},
				{2 * s, observe(Outcomes{Successes: 1, Status5xx: 5}), false},
			},
			state: Closed,
		},
		{
			name: "failures still inside the window count",
			steps: []step{
				{0, observe(Outcomes{Successes: 5, Status5xx: 10}), false},
				{9 * s, observe(Outcomes{Successes: 5, Status5xx: 10}), true},
			},
			state: Open, trips: 1, until: 14 * s,
			reason: "opened: error rate 66% over 10s (20/30); ejected for 5s (trip 1)",
		},
		{
			name: "failures older than the window are forgotten",
			steps: []step{
				{0, observe(Outcomes{Successes: 5, Status5xx: 10}), false},
				{10 * s, observe(Outcomes{Successes: 5, Status5xx: 10}), false},
			},
			state: Closed,
		},
		{
			name: "outcomes while open are ignored",
			steps: seq(tripAt0, []step{
				{1 * s, observe(Outcomes{Successes: 100}), false},
				{2 * s, observe(connects(50, "edge-b")), false},
			}),
			state: Open, trips: 1, until: 5 * s,
			reason: "opened: 5 consecutive connect errors, last from edge-a; ejected for 5s (trip 1)",
		},
		{
			name:  "open stays open until the ejection ends",
			steps: seq(tripAt0, []step{{4999 * ms, tick(), false}}),
			state: Open, trips: 1, until: 5 * s,
			reason: "opened: 5 consecutive connect errors, last from edge-a; ejected for 5s (trip 1)",
		},
		{
			name: "open->half-open on the tick after the ejection", steps: halfOpenAt5,
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended",
		},
		{
			name:  "outcomes while half-open are ignored",
			steps: seq(halfOpenAt5, []step{{6 * s, observe(connects(5, "edge-a")), false}}),
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended",
		},
		{
			name: "half-open grants the lease to exactly one edge",
			steps: seq(probingA, []step{
				{6 * s, grant("edge-b"), false},
				{6500 * ms, grant("edge-a"), true},
				{6900 * ms, grant("edge-c"), false},
			}),
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended", holder: "edge-a",
		},
		{
			name: "closed and open breakers grant no lease",
			steps: []step{
				{0, grant("edge-a"), false},
				{1 * s, observe(connects(5, "edge-a")), true},
				{2 * s, grant("edge-a"), false},
			},
			state: Open, trips: 1, until: 6 * s,
			reason: "opened: 5 consecutive connect errors, last from edge-a; ejected for 5s (trip 1)",
		},
		{
			name:  "an edge without an id gets no lease",
			steps: seq(halfOpenAt5, []step{{5 * s, grant(""), false}}),
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended",
		},
		{
			name: "an expired lease lets another edge probe",
			steps: seq(probingA, []step{
				{6999 * ms, grant("edge-b"), false},
				{7 * s, grant("edge-b"), true},
			}),
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended", holder: "edge-b",
		},
		{
			name: "half-open->closed: the holder's probe succeeds", steps: closedAt5500,
			state: Closed, trips: 1, reason: "closed: probe by edge-a succeeded",
		},
		{
			name: "half-open->open: the holder's probe fails, the next ejection is longer",
			steps: seq(probingA, []step{
				{5500 * ms, probe("edge-a", false), true},
				{15499 * ms, tick(), false},
			}),
			state: Open, trips: 2, until: 15500 * ms,
			reason: "opened: probe by edge-a failed; ejected for 10s (trip 2)",
		},
		{
			name: "the longer ejection ends too",
			steps: seq(probingA, []step{
				{5500 * ms, probe("edge-a", false), true},
				{15500 * ms, tick(), true},
			}),
			state: HalfOpen, trips: 2, reason: "half-open: ejection of 10s ended",
		},
		{
			name: "results from edges without the lease are ignored",
			steps: seq(probingA, []step{
				{5100 * ms, probe("edge-b", true), false},
				{5200 * ms, probe("edge-b", false), false},
				{5300 * ms, probe("", true), false},
			}),
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended", holder: "edge-a",
		},
		{
			name: "the former holder's result is ignored once the lease moved",
			steps: seq(probingA, []step{
				{7 * s, grant("edge-b"), true},
				{7100 * ms, probe("edge-a", false), false},
				{7200 * ms, probe("edge-b", true), true},
			}),
			state: Closed, trips: 1, reason: "closed: probe by edge-b succeeded",
		},
		{
			name:  "a late result from the holder counts while nobody took the lease",
			steps: seq(probingA, []step{{9 * s, probe("edge-a", true), true}}),
			state: Closed, trips: 1, reason: "closed: probe by edge-a succeeded",
		},
		{
			name:  "probe results without any lease are ignored",
			steps: seq([]step{{0, probe("edge-a", false), false}}, halfOpenAt5, []step{{6 * s, probe("edge-a", true), false}}),
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended",
		},
		{
			name:   "the ejection grows per trip and is capped at MaxEjection",
			policy: policy.Breaker{MaxEjection: 12 * time.Second},
			steps: seq(probingA, []step{
				{5 * s, probe("edge-a", false), true}, // 10s
				{15 * s, tick(), true},
				{15 * s, grant("edge-a"), true},
				{15 * s, probe("edge-a", false), true}, // 15s, capped
			}),
			state: Open, trips: 3, until: 27 * s,
			reason: "opened: probe by edge-a failed; ejected for 12s (trip 3)",
		},
		{
			name: "trips remembered lengthen the next ejection",
			steps: seq(closedAt5500, []step{
				{35499 * ms, tick(), false},
				{35499 * ms, observe(connects(5, "edge-b")), true},
			}),
			state: Open, trips: 2, until: 45499 * ms,
			reason: "opened: 5 consecutive connect errors, last from edge-b; ejected for 10s (trip 2)",
		},
		{
			name: "each TripDecay spent closed forgets one trip",
			steps: seq(closedAt5500, []step{
				{35500 * ms, tick(), false},
				{36 * s, observe(connects(5, "edge-b")), true},
			}),
			state: Open, trips: 1, until: 41 * s,
			reason: "opened: 5 consecutive connect errors, last from edge-b; ejected for 5s (trip 1)",
		},
		{
			name: "trips decay one per period",
			steps: seq(probingA, []step{
				{5 * s, probe("edge-a", false), true},
				{15 * s, tick(), true},
				{15 * s, grant("edge-a"), true},
				{15 * s, probe("edge-a", true), true}, // closed with 2 trips
				{74999 * ms, tick(), false},           // one period: 1 trip left
			}),
			state: Closed, trips: 1, reason: "closed: probe by edge-a succeeded",
		},
		{
			name:  "operator reset closes an open breaker and forgets its trips",
			steps: seq(tripAt0, []step{{1 * s, reset(), true}}),
			state: Closed, reason: "closed: reset by operator",
		},
		{
			name:  "operator reset of a half-open breaker drops the lease",
			steps: seq(probingA, []step{{6 * s, reset(), true}, {6 * s, probe("edge-a", false), false}}),
			state: Closed, reason: "closed: reset by operator",
		},
		{
			name:  "operator reset of a closed breaker forgets trips and says so",
			steps: seq(closedAt5500, []step{{6 * s, reset(), false}}),
			state: Closed, reason: "closed: reset by operator",
		},
		{
			name: "the clock never runs backwards",
			steps: []step{
				{10 * s, observe(connects(5, "edge-a")), true},
				{0, tick(), false}, // an earlier leader timestamp counts as 10s
				{15 * s, tick(), true},
			},
			state: HalfOpen, trips: 1, reason: "half-open: ejection of 5s ended",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.policy)
			for i, st := range tt.steps {
				if got := st.op(&b, t0.Add(st.at)); got != st.want {
					t.Fatalf("step %d at %s: got %v, want %v (status %+v)", i, st.at, got, st.want, b.Status())
				}
			}
			got := b.Status()
			if got.State != tt.state || got.Trips != tt.trips || got.Reason != tt.reason || got.ProbeHolder != tt.holder {
				t.Errorf("status: state %s, trips %d, holder %q, reason %q\nwant: state %s, trips %d, holder %q, reason %q",
					got.State, got.Trips, got.ProbeHolder, got.Reason, tt.state, tt.trips, tt.holder, tt.reason)
			}
			if tt.state == Open && !got.EjectedUntil.Equal(t0.Add(tt.until)) {
				t.Errorf("ejected until %s, want %s", got.EjectedUntil, t0.Add(tt.until))
			}
		})
	}
}

func TestTransitionReported(t *testing.T) {
	b := New(policy.Breaker{})
	now := t0.Add(1500 * time.Millisecond)
	tr, ok := b.Observe(now, Outcomes{Status5xx: 1, Timeouts: 4, Edge: "edge-eu-1"})
	want := Transition{From: Closed, To: Open, At: now,
		Reason: "opened: 5 consecutive failures (4 timeouts, 1 5xx), last from edge-eu-1; ejected for 5s (trip 1)"}
	if !ok || tr != want {
		t.Fatalf("transition %+v (%v), want %+v", tr, ok, want)
	}
	st := b.Status()
	if !st.OpenedAt.Equal(now) || !st.Since.Equal(now) || st.Ejection != 5*time.Second {
		t.Errorf("status %+v: want opened and since %s, ejection 5s", st, now)
	}
}

func TestDeadline(t *testing.T) {
	b := New(policy.Breaker{})
	if _, ok := b.Deadline(); ok {
		t.Fatal("a fresh breaker has a deadline; the leader would tick it for nothing")
	}
	b.Observe(t0, connects(5, "edge-a"))
	if d, ok := b.Deadline(); !ok || !d.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("open: deadline %s %v, want the ejection end %s", d, ok, t0.Add(5*time.Second))
	}
	b.Tick(t0.Add(5 * time.Second))
	if _, ok := b.Deadline(); ok {
		t.Fatal("half-open has a deadline; only a probe can move it")
	}
	b.GrantProbe(t0.Add(5*time.Second), "edge-a")
	b.ProbeResult(t0.Add(6*time.Second), "edge-a", true)
	if d, ok := b.Deadline(); !ok || !d.Equal(t0.Add(36*time.Second)) {
		t.Fatalf("closed with a trip: deadline %s %v, want the decay at %s", d, ok, t0.Add(36*time.Second))
	}
}

func TestSetPolicy(t *testing.T) {
	b := New(policy.Breaker{})
	b.Observe(t0, Outcomes{Successes: 5, Status5xx: 10})
	b.SetPolicy(policy.Breaker{Window: 20 * time.Second, MinRequests: 10})
	if _, ok := b.Observe(t0.Add(time.Second), Outcomes{Successes: 1}); ok {
		t.Fatal("outcomes counted under the old window tripped the breaker after the window changed")
	}
	if _, ok := b.Observe(t0.Add(2*time.Second), Outcomes{Successes: 4, Status5xx: 5}); !ok {
		t.Fatalf("10 requests with 5 failures did not trip with MinRequests 10: %+v", b.Status())
	}
	if got := b.Policy(); got.Window != 20*time.Second || got.ConsecutiveFailures != policy.DefaultConsecutiveFailures {
		t.Errorf("policy %+v: want the new window with defaults filled in", got)
	}
}
