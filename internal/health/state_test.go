package health

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

func TestEdgeThresholds(t *testing.T) {
	tests := []struct {
		results string
		policy  policy.Health
		want    Verdict
	}{
		{results: "p", want: Unknown},
		{results: "pp", want: Healthy},
		{results: "ff", want: Unknown},
		{results: "fff", want: Unhealthy},
		{results: "fffp", want: Unhealthy},
		{results: "fffpp", want: Healthy},
		{results: "ppff", want: Healthy},
		{results: "ppfff", want: Unhealthy},
		{results: "pfpfpf", want: Unknown},
		{results: "f", policy: policy.Health{UnhealthyThreshold: 1}, want: Unhealthy},
		{results: "ffffp", policy: policy.Health{HealthyThreshold: 1}, want: Healthy},
	}
	for _, tt := range tests {
		// One batch or one report per result: batching must not matter.
		batched, single := New(tt.policy), New(tt.policy)
		report{0, "edge-a", "us-east", tt.results}.apply(&batched)
		for i, r := range tt.results {
			report{time.Duration(i) * time.Second, "edge-a", "us-east", string(r)}.apply(&single)
		}
		for name, s := range map[string]State{"batched": batched, "one by one": single} {
			if got := s.Observations()[0].Verdict; got != tt.want {
				t.Errorf("%q (%s, policy %+v): edge sees %s, want %s", tt.results, name, tt.policy, got, tt.want)
			}
			if got := s.Status().Verdict; got != tt.want {
				t.Errorf("%q (%s): endpoint %s, want %s (its only edge's verdict)", tt.results, name, got, tt.want)
			}
		}
	}
}

func TestMajority(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name    string
		reports []report
		want    Verdict
		reason  string
		since   time.Duration
	}{
		{
			name: "two of three unhealthy",
			reports: []report{
				{0, "edge-a", "us-east", "pp"}, {0, "edge-b", "us-east", "fff"}, {1 * s, "edge-c", "us-east", "fff"},
			},
			// healthy from edge-a alone at 0; 1-1 kept it; 1-2 at 1s.
			want: Unhealthy, reason: "unhealthy: 2 of 3 fresh edges say unhealthy", since: 1 * s,
		},
		{
			name: "two of three healthy",
			reports: []report{
				{0, "edge-a", "us-east", "fff"}, {1 * s, "edge-b", "us-east", "pp"}, {2 * s, "edge-c", "us-east", "pp"},
			},
			// edge-a alone said unhealthy at 0; 1-1 at 1s kept it; 2-1 at 2s.
			want: Healthy, reason: "healthy: 2 of 3 fresh edges say healthy", since: 2 * s,
		},
		{
			name: "edges without a verdict yet do not count",
			reports: []report{
				{0, "edge-a", "us-east", "fff"}, {0, "edge-b", "us-east", "p"}, {0, "edge-c", "us-east", "ff"},
			},
			want: Unhealthy, reason: "unhealthy: 1 of 1 fresh edges say unhealthy",
		},
		{
			name:    "no edge with a verdict yet: unknown",
			reports: []report{{0, "edge-a", "us-east", "p"}, {0, "edge-b", "us-east", "ff"}},
			want:    Unknown,
		},
		{
			name: "a tie keeps the previous verdict and its since",
			reports: []report{
				{0, "edge-a", "us-east", "pp"}, {0, "edge-b", "us-east", "pp"},
				{5 * s, "edge-b", "us-east", "fff"},
			},
			want: Healthy, reason: "healthy: 1 of 1 fresh edges say healthy",
		},
		{
			name: "a majority change moves since",
			reports: []report{
				{0, "edge-a", "us-east", "pp"}, {5 * s, "edge-a", "us-east", "fff"},
			},
			want: Unhealthy, reason: "unhealthy: 1 of 1 fresh edges say unhealthy", since: 5 * s,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := New(policy.Health{})
			for _, r := range tt.reports {
				r.apply(&st)
			}
			got := st.Status()
			wantSince := time.Time{}
			if tt.want != Unknown {
				wantSince = t0.Add(tt.since)
			}
			if got.Verdict != tt.want || got.Reason != tt.reason || !got.Since.Equal(wantSince) {
				t.Fatalf("got %s since %s (%q), want %s since %s (%q)", got.Verdict, got.Since, got.Reason, tt.want, wantSince, tt.reason)
			}
		})
	}
}

func TestStaleEdgesAreIgnoredThenForgotten(t *testing.T) {
	st := New(policy.Health{})
	for _, r := range []report{
		{0, "edge-b", "us-east", "pp"}, {0, "edge-c", "us-east", "pp"}, {0, "edge-a", "us-east", "fff"},
		{20 * time.Second, "edge-a", "us-east", "f"},
	} {
		r.apply(&st)
	}
	if v := st.Status().Verdict; v != Healthy {
		t.Fatalf("verdict %s, want healthy (2 of 3)", v)
	}
	if d, ok := st.Deadline(); !ok || !d.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("deadline %s %v, want %s when edge-b and edge-c go stale", d, ok, t0.Add(30*time.Second))
	}
	if st.Tick(t0.Add(30*time.Second - 1)) {
		t.Fatal("the verdict changed before any edge went stale")
	}
	if !st.Tick(t0.Add(30*time.Second)) || st.Status().Reason != "unhealthy: 1 of 1 fresh edges say unhealthy" {
		t.Fatalf("after edge-b and edge-c went silent: %+v, want unhealthy from edge-a alone", st.Status())
	}
	stale := func() (out []string) {
		for _, o := range st.Observations() {
			if o.Stale {
				out = append(out, o.Edge)
			}
		}
		return out
	}
	if got := stale(); !slices.Equal(got, []string{"edge-b", "edge-c"}) {
		t.Fatalf("stale edges %v, want edge-b and edge-c", got)
	}
	// edge-a goes quiet too: nobody fresh, the verdict stays.
	if st.Tick(t0.Add(60*time.Second)) || st.Status().Verdict != Unhealthy {
		t.Fatalf("verdict changed with no fresh edge left: %+v", st.Status())
	}
	if got := len(st.Observations()); got != 1 {
		t.Fatalf("%d edges remembered after 2*StaleAfter of silence from edge-b and edge-c, want only edge-a", got)
	}
	if _, ok := st.Deadline(); ok {
		t.Fatal("deadline set with no fresh edge: the leader would tick for nothing")
	}
}

func TestObservations(t *testing.T) {
	st := New(policy.Health{})
	for _, r := range []report{
		{0, "edge-z", "eu-west", "pp"}, {1 * time.Second, "edge-b", "us-east", "fff"},
		{2 * time.Second, "edge-a", "us-east", "ppf"}, {3 * time.Second, "edge-c", "eu-west", "p"},
	} {
		r.apply(&st)
	}
	want := []Observation{
		{Edge: "edge-c", Region: "eu-west", Verdict: Unknown, Passes: 1, LastReport: t0.Add(3 * time.Second)},
		{Edge: "edge-z", Region: "eu-west", Verdict: Healthy, Passes: 2, LastReport: t0},
		{Edge: "edge-a", Region: "us-east", Verdict: Healthy, Failures: 1, LastReport: t0.Add(2 * time.Second), Detail: "HTTP 503"},
		{Edge: "edge-b", Region: "us-east", Verdict: Unhealthy, Failures: 3, LastReport: t0.Add(1 * time.Second), Detail: "HTTP 503"},
	}
	if got := st.Observations(); !slices.Equal(got, want) {
		t.Fatalf("observations\n%+v\nwant\n%+v", got, want)
	}
}

func TestEmptyReportsChangeNothing(t *testing.T) {
	st := New(policy.Health{})
	report{0, "edge-a", "us-east", "pp"}.apply(&st)
	before, _ := st.MarshalBinary()
	if st.Report(t0.Add(time.Second), Report{Edge: "edge-a"}) || st.Report(t0.Add(time.Second), Report{Checks: checks("fff")}) {
		t.Fatal("an empty report changed the verdict")
	}
	if after, _ := st.MarshalBinary(); !bytes.Equal(before, after) {
		t.Fatal("an empty report changed the state")
	}
}

func TestCopiesAreIndependent(t *testing.T) {
	a := New(policy.Health{})
	report{0, "edge-a", "us-east", "pp"}.apply(&a)
	report{0, "edge-c", "us-east", "pp"}.apply(&a)
	before, _ := a.MarshalBinary()
	b := a
	report{time.Second, "edge-a", "us-east", "fff"}.apply(&b) // in place
	report{time.Second, "edge-b", "us-east", "fff"}.apply(&b) // insert
	b.Tick(t0.Add(time.Hour))                                 // forget all
	if after, _ := a.MarshalBinary(); !bytes.Equal(before, after) {
		t.Fatalf("changing a copy changed the original:\n%s\n%s", before, after)
	}
}

func TestPolicy(t *testing.T) {
	if err := (policy.Health{StaleAfter: -time.Second}).Validate(); err == nil {
		t.Fatal("a negative stale_after was accepted")
	}
	if err := (policy.Health{}).Validate(); err != nil {
		t.Fatalf("the zero policy (defaults) was refused: %v", err)
	}
	st := New(policy.Health{StaleAfter: -1})
	st.SetPolicy(policy.Health{HealthyThreshold: 1})
	if p := st.Policy(); p.HealthyThreshold != 1 || p.UnhealthyThreshold != 3 || p.StaleAfter != 30*time.Second {
		t.Fatalf("policy %+v: want the new threshold with defaults filled in", p)
	}
}
