package state

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at stamps cmd with the leader's time t0+d, as raftstore.Propose does.
func at(d time.Duration, cmd *pb.Command) *pb.Command {
	cmd.NowUnixNano = t0.Add(d).UnixNano()
	return cmd
}

func outcomesCmd(edge string, o ...*pb.EndpointOutcomes) *pb.Command {
	return &pb.Command{Op: &pb.Command_ReportOutcomes{ReportOutcomes: &pb.ReportOutcomesOp{Edge: edge, Outcomes: o}}}
}

func connectErrors(endpoint string, n uint32) *pb.EndpointOutcomes {
	return &pb.EndpointOutcomes{Endpoint: endpoint, ConnectErrors: n}
}

func checksCmd(edge, region, endpoint string, ok ...bool) *pb.Command {
	c := &pb.EndpointChecks{Endpoint: endpoint}
	for _, v := range ok {
		c.Results = append(c.Results, &pb.CheckResult{Ok: v, Detail: map[bool]string{true: "HTTP 200", false: "HTTP 503"}[v]})
	}
	return &pb.Command{Op: &pb.Command_ReportHealth{ReportHealth: &pb.ReportHealthOp{Edge: edge, Region: region, Checks: []*pb.EndpointChecks{c}}}}
}

func tickCmd() *pb.Command { return &pb.Command{Op: &pb.Command_Tick{Tick: &pb.TickOp{}}} }

func grantCmd(endpoint, edge string) *pb.Command {
	return &pb.Command{Op: &pb.Command_GrantProbe{GrantProbe: &pb.GrantProbeOp{Endpoint: endpoint, Edge: edge}}}
}

func probeCmd(endpoint, edge string, ok bool) *pb.Command {
	return &pb.Command{Op: &pb.Command_ProbeResult{ProbeResult: &pb.ProbeResultOp{Endpoint: endpoint, Edge: edge, Ok: ok}}}
}

func resetCmd(endpoint string) *pb.Command {
	return &pb.Command{Op: &pb.Command_ResetBreaker{ResetBreaker: &pb.ResetBreakerOp{Endpoint: endpoint}}}
}

// breakerConfig is baseConfig with a breaker policy on c1: 3 consecutive
// failures open it for 1s.
func breakerConfig() *pb.RoutingConfig {
	cfg := baseConfig()
	cfg.Cells[0].Breaker = &pb.BreakerPolicy{ConsecutiveFailures: 3, BaseEjectionMs: 1000, ProbeLeaseMs: 500}
	cfg.Cells[0].HealthCheck = &pb.HealthCheckPolicy{HealthyThreshold: 1, UnhealthyThreshold: 2, StaleAfterMs: 10000}
	return cfg
}

func withBreakers(t testing.TB) *Store {
	t.Helper()
	s := New()
	mustChange(t, s, 10, applyConfigCmd(breakerConfig()))
	return s
}

// mustQuiet applies cmd and expects success that moves no revision and emits
// nothing (a counter-only change, or none).
func mustQuiet(t testing.TB, s *Store, index uint64, cmd *pb.Command) *pb.CommandResult {
	t.Helper()
	rev := s.Freeze().Revision()
	res, ch := s.Apply(index, cmd)
	if res.GetError() != nil || ch != nil || res.GetRevision() != rev || s.Freeze().Revision() != rev {
		t.Fatalf("apply at %d: error %v, change %v, revision %d -> %d; want success with no event at revision %d",
			index, res.GetError(), eventKinds(ch), rev, s.Freeze().Revision(), rev)
	}
	return res
}

func breakerOf(t testing.TB, s *Store, endpoint string) *pb.BreakerStatus {
	t.Helper()
	bs := s.Freeze().Breakers()
	for _, b := range bs {
		if b.GetEndpoint() == endpoint {
			return b
		}
	}
	t.Fatalf("no breaker listed for %q", endpoint)
	return nil
}

func TestBreakerCommandsRefuseBadInput(t *testing.T) {
	s := withBreakers(t)
	nf, inv := pb.CommandError_CODE_NOT_FOUND, pb.CommandError_CODE_INVALID_ARGUMENT
	for _, tc := range []struct {
		name  string
		cmd   *pb.Command
		code  pb.CommandError_Code
		field string
	}{
		{"outcomes for an unknown endpoint", outcomesCmd("e1", connectErrors("c1-use", 1), connectErrors("nope", 1)), nf, "outcomes[1].endpoint"},
		{"outcomes without an endpoint", outcomesCmd("e1", connectErrors("", 1)), inv, "outcomes[0].endpoint"},
		{"outcomes without an edge", outcomesCmd("", connectErrors("c1-use", 1)), inv, "edge"},
		{"checks for an unknown endpoint", checksCmd("e1", "us-east", "nope", false), nf, "checks[0].endpoint"},
		{"checks without an edge", checksCmd("", "us-east", "c1-use", false), inv, "edge"},
		{"probe lease for an unknown endpoint", grantCmd("nope", "e1"), nf, "endpoint"},
		{"probe lease without an edge", grantCmd("c1-use", ""), inv, "edge"},
		{"probe result for an unknown endpoint", probeCmd("nope", "e1", true), nf, "endpoint"},
		{"reset of an unknown endpoint", resetCmd("nope"), nf, "endpoint"},
		{"reset without an endpoint", resetCmd(""), inv, "endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustRefuse(t, s, 11, at(0, tc.cmd), tc.code, tc.field)
			// A refused batch changes no counter either: the good endpoint of
			// the first case was not counted.
			if b := breakerOf(t, s, "c1-use"); b.GetModRevision() != 0 {
				t.Fatalf("refusal touched c1-use: %v", b)
			}
		})
	}
}

// TestBreakerLifecycle walks one endpoint through every transition and checks
// the revision rule: a status change emits put_breaker and moves the revision
// to the command's index; anything else is applied silently.
func TestBreakerLifecycle(t *testing.T) {
	s := withBreakers(t)
	mustQuiet(t, s, 11, at(0, outcomesCmd("e1", connectErrors("c1-use", 1))))
	mustQuiet(t, s, 12, at(time.Millisecond, outcomesCmd("e2", connectErrors("c1-use", 1))))
	if b := breakerOf(t, s, "c1-use"); b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED || b.GetModRevision() != 0 {
		t.Fatalf("after 2 of 3 failures: %v; want closed, never changed", b)
	}
	ch := mustChange(t, s, 13, at(2*time.Millisecond, outcomesCmd("e1", connectErrors("c1-use", 1))))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_OPEN")
	open := ch.GetEvents()[0].GetPutBreaker()
	if open.GetModRevision() != 13 || open.GetTrips() != 1 || open.GetEjectedUntilUnixMs() != t0.Add(1002*time.Millisecond).UnixMilli() || open.GetReason() == "" {
		t.Fatalf("open status %v: want mod_revision 13, trip 1, ejected until t0+1.002s, a reason", open)
	}
	if got := breakerOf(t, s, "c1-use"); !proto.Equal(got, open) {
		t.Fatalf("listed %v, event said %v", got, open)
	}
	if d, ok := s.Freeze().NextDeadline(); !ok || !d.Equal(t0.Add(1002*time.Millisecond)) {
		t.Fatalf("next deadline %v %v; want the end of the ejection", d, ok)
	}
	// Outcomes while open describe old requests: ignored, no event.
	mustQuiet(t, s, 14, at(10*time.Millisecond, outcomesCmd("e1", connectErrors("c1-use", 5))))
	if g := mustQuiet(t, s, 15, at(20*time.Millisecond, grantCmd("c1-use", "e1"))); g.GetProbeGranted() {
		t.Fatal("a probe lease was granted while open")
	}
	mustQuiet(t, s, 16, at(500*time.Millisecond, tickCmd())) // before the ejection ends
	ch = mustChange(t, s, 17, at(1100*time.Millisecond, tickCmd()))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_HALF_OPEN")

	res, ch := s.Apply(18, at(1200*time.Millisecond, grantCmd("c1-use", "e1")))
	if !res.GetProbeGranted() || ch == nil || res.GetRevision() != 18 {
		t.Fatalf("first lease request: granted %v, change %v, revision %d; want granted with an event at 18", res.GetProbeGranted(), ch, res.GetRevision())
	}
	if h := ch.GetEvents()[0].GetPutBreaker().GetProbeHolder(); h != "e1" {
		t.Fatalf("probe holder %q, want e1", h)
	}
	if g := mustQuiet(t, s, 19, at(1300*time.Millisecond, grantCmd("c1-use", "e2"))); g.GetProbeGranted() {
		t.Fatal("a second edge got the probe lease while the first holds it")
	}
	if g := mustQuiet(t, s, 20, at(1300*time.Millisecond, grantCmd("c1-use", "e1"))); !g.GetProbeGranted() {
		t.Fatal("the holder asking again was refused")
	}
	mustQuiet(t, s, 21, at(1400*time.Millisecond, probeCmd("c1-use", "e2", true))) // not the holder
	ch = mustChange(t, s, 22, at(1500*time.Millisecond, probeCmd("c1-use", "e1", true)))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_CLOSED")

	// Reopen, then an operator reset closes it and forgets the trips.
	mustChange(t, s, 23, at(2*time.Second, outcomesCmd("e1", connectErrors("c1-use", 3))))
	ch = mustChange(t, s, 24, at(2100*time.Millisecond, resetCmd("c1-use")))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_CLOSED")
	if b := ch.GetEvents()[0].GetPutBreaker(); b.GetTrips() != 0 {
		t.Fatalf("after reset: %v; want no trips", b)
	}
	// Resetting an endpoint that never had a breaker changes nothing.
	mustQuiet(t, s, 25, at(3*time.Second, resetCmd("c2-aps")))
}

func TestHealthVerdictsEmitOnlyOnChange(t *testing.T) {
	s := withBreakers(t) // c1: unhealthy after 2 failures, healthy after 1 pass
	mustQuiet(t, s, 11, at(0, checksCmd("e1", "us-east", "c1-use", false)))
	ch := mustChange(t, s, 12, at(time.Second, checksCmd("e1", "us-east", "c1-use", false)))
	wantEvents(t, ch, "put_health:c1-use=HEALTH_VERDICT_UNHEALTHY")
	mustQuiet(t, s, 13, at(2*time.Second, checksCmd("e1", "us-east", "c1-use", false, false)))
	// A second edge disagreeing makes a tie: the verdict stays.
	mustQuiet(t, s, 14, at(3*time.Second, checksCmd("e2", "us-east", "c1-use", true)))
	reports, rev := s.Freeze().Health(), s.Freeze().Revision()
	if rev != 12 {
		t.Fatalf("health read at revision %d, want 12", rev)
	}
	var got *pb.EndpointHealthReport
	for _, r := range reports {
		if r.GetStatus().GetEndpoint() == "c1-use" {
			got = r
		}
	}
	if got.GetStatus().GetVerdict() != pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY || got.GetStatus().GetModRevision() != 12 || len(got.GetObservations()) != 2 {
		t.Fatalf("c1-use health %v; want unhealthy since 12 with 2 observations", got)
	}
	if o := got.GetObservations()[0]; o.GetEdge() != "e1" || o.GetFailures() != 4 || o.GetDetail() != "HTTP 503" {
		t.Fatalf("e1's observation %v; want 4 failures, detail HTTP 503", o)
	}
	// e2 goes stale after 10s while e1 keeps reporting: a tick at e2's
	// deadline is silent (e1 still says unhealthy), and e1's pass makes it healthy.
	mustQuiet(t, s, 15, at(14*time.Second, tickCmd()))
	ch = mustChange(t, s, 16, at(15*time.Second, checksCmd("e1", "us-east", "c1-use", true)))
	wantEvents(t, ch, "put_health:c1-use=HEALTH_VERDICT_HEALTHY")
}

// trippedStore has c1-use open (trip 1, index 13) and observations on c1-euw.
func trippedStore(t testing.TB) *Store {
	s := withBreakers(t)
	mustQuiet(t, s, 11, at(0, outcomesCmd("e1", connectErrors("c1-use", 2))))
	mustQuiet(t, s, 12, at(0, checksCmd("e1", "eu-west", "c1-euw", false)))
	mustChange(t, s, 13, at(time.Millisecond, outcomesCmd("e2", connectErrors("c1-use", 1))))
	return s
}

func TestSnapshotCarriesBreakerAndHealthState(t *testing.T) {
	s := trippedStore(t)
	mustQuiet(t, s, 14, at(2*time.Millisecond, outcomesCmd("e1", &pb.EndpointOutcomes{Endpoint: "c1-euw", Status_5Xx: 2})))
	r, decoded := viaRaftSnapshot(t, s, 14)
	if a, b := s.Freeze().State(), r.Freeze().State(); !proto.Equal(a, b) || len(a.GetBreakers()) != 1 {
		t.Fatalf("restored state differs or lacks the open breaker:\n%v\n%v", a, b)
	}
	h1 := s.Freeze().Health()
	h2 := r.Freeze().Health()
	if !proto.Equal(&pb.ListHealthResponse{Endpoints: h1}, &pb.ListHealthResponse{Endpoints: h2}) {
		t.Fatal("restored health observations differ")
	}
	// The counters survived too: one more 5xx meets c1-euw's threshold on
	// both, and on both the ejection cap (c1-use is out, the default 50% of
	// two endpoints allows one) refuses the trip.
	for _, st := range []*Store{s, r} {
		ch := mustChange(t, st, 15, at(3*time.Millisecond, outcomesCmd("e1", &pb.EndpointOutcomes{Endpoint: "c1-euw", Status_5Xx: 1})))
		wantEvents(t, ch, "put_breaker:c1-euw=BREAKER_STATE_CLOSED")
		if r := ch.GetEvents()[0].GetPutBreaker().GetReason(); !strings.HasPrefix(r, "closed: trip refused (3 consecutive 5xx") {
			t.Fatalf("reason %q; want the refused trip", r)
		}
	}
	if !proto.Equal(s.Freeze().State(), r.Freeze().State()) {
		t.Fatal("original and restored store diverged after the same command")
	}

	refusesRestore(t, decoded, map[string]func(*pb.Snapshot){
		"corrupt breaker":  func(x *pb.Snapshot) { x.EndpointStates[0].Breaker = []byte("{") },
		"corrupt health":   func(x *pb.Snapshot) { x.EndpointStates[0].Health = []byte(`{"V":7}`) },
		"unknown endpoint": func(x *pb.Snapshot) { x.EndpointStates[0].Endpoint = "nope" },
		"future revision":  func(x *pb.Snapshot) { x.EndpointStates[0].BreakerModRevision = 99 },
		"duplicate":        func(x *pb.Snapshot) { x.EndpointStates = append(x.EndpointStates, x.EndpointStates[0]) },
	})
}

// viaRaftSnapshot restores a new store from s's raft snapshot at applied,
// marshalled and unmarshalled as raft ships it, and returns it with the
// decoded snapshot.
func viaRaftSnapshot(t testing.TB, s *Store, applied uint64) (*Store, *pb.Snapshot) {
	t.Helper()
	snap, err := s.Freeze().Snapshot(applied)
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	decoded := &pb.Snapshot{}
	if err := proto.Unmarshal(data, decoded); err != nil {
		t.Fatal(err)
	}
	r, err := FromSnapshot(decoded)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return r, decoded
}

// refusesRestore checks that FromSnapshot refuses snap after each edit.
func refusesRestore(t *testing.T, snap *pb.Snapshot, edits map[string]func(*pb.Snapshot)) {
	t.Helper()
	for name, edit := range edits {
		bad := proto.Clone(snap).(*pb.Snapshot)
		edit(bad)
		if _, err := FromSnapshot(bad); !errors.Is(err, ErrInvalidSnapshot) {
			t.Errorf("%s: restore error %v, want ErrInvalidSnapshot", name, err)
		}
	}
}

func TestConfigChangeSetsPolicyAndDropsRemovedEndpoints(t *testing.T) {
	s := withBreakers(t)
	mustQuiet(t, s, 11, at(0, outcomesCmd("e1", connectErrors("c1-use", 2))))
	// Lowering the threshold applies to the run already counted.
	cfg := breakerConfig()
	cfg.Cells[0].Breaker.ConsecutiveFailures = 2
	wantEvents(t, mustChange(t, s, 12, at(0, applyConfigCmd(cfg))), "put_cell:c1")
	ch := mustChange(t, s, 13, at(time.Millisecond, outcomesCmd("e1", connectErrors("c1-use", 1))))
	wantEvents(t, ch, "put_breaker:c1-use=BREAKER_STATE_OPEN")

	// c1-use leaves the config: its state goes, and comes back fresh.
	without := breakerConfig()
	without.Cells[0].Endpoints = without.Cells[0].Endpoints[1:]
	mustChange(t, s, 14, applyConfigCmd(without))
	if st := s.Freeze().State(); len(st.GetBreakers()) != 0 {
		t.Fatalf("breakers of a removed endpoint survived: %v", st.GetBreakers())
	}
	if snap, _ := s.Freeze().Snapshot(14); len(snap.GetEndpointStates()) != 0 {
		t.Fatalf("raft snapshot still holds %v", snap.GetEndpointStates())
	}
	mustChange(t, s, 15, applyConfigCmd(breakerConfig()))
	if b := breakerOf(t, s, "c1-use"); b.GetState() != pb.BreakerState_BREAKER_STATE_CLOSED || b.GetModRevision() != 0 {
		t.Fatalf("re-added endpoint: %v; want a fresh closed breaker", b)
	}
}

func TestPolicyValidationNamesTheField(t *testing.T) {
	s := New()
	for _, tc := range []struct {
		edit  func(*pb.Cell)
		field string
	}{
		{func(c *pb.Cell) { c.Breaker = &pb.BreakerPolicy{BaseEjectionMs: 5000, MaxEjectionMs: 1000} }, "cells[0].breaker.max_ejection_ms"},
		{func(c *pb.Cell) { c.Breaker = &pb.BreakerPolicy{FailureRateThreshold: 1.5} }, "cells[0].breaker.failure_rate_threshold"},
		{func(c *pb.Cell) { c.Breaker = &pb.BreakerPolicy{WindowMs: 5} }, "cells[0].breaker.window_ms"},
		{func(c *pb.Cell) { c.Breaker = &pb.BreakerPolicy{MaxEjectionPercent: 101} }, "cells[0].breaker.max_ejection_percent"},
		{func(c *pb.Cell) { c.HealthCheck = &pb.HealthCheckPolicy{HttpPath: "healthz"} }, "cells[0].health_check.http_path"},
		{func(c *pb.Cell) { c.HealthCheck = &pb.HealthCheckPolicy{IntervalMs: 1000, TimeoutMs: 2000} }, "cells[0].health_check.timeout_ms"},
		{func(c *pb.Cell) { c.PanicThresholdPercent = 250 }, "cells[0].panic_threshold_percent"},
	} {
		cfg := baseConfig()
		tc.edit(cfg.Cells[0])
		mustRefuse(t, s, 1, applyConfigCmd(cfg), pb.CommandError_CODE_INVALID_ARGUMENT, tc.field)
	}
}

// An edge sends an endpoint twice in one batch when failures followed the
// batch's last success: those failures extend the run, and the successes
// before them, old news, do not end it, even when another edge's run started
// it. (A batch ending with a success still ends the run.)
func TestTrailingFailuresOfABatchExtendTheRun(t *testing.T) {
	s := withBreakers(t) // 3 consecutive failures open c1-use
	mustQuiet(t, s, 11, at(0, outcomesCmd("e1",
		&pb.EndpointOutcomes{Endpoint: "c1-use", Successes: 5, Status_5Xx: 4},
		&pb.EndpointOutcomes{Endpoint: "c1-use", ConnectErrors: 2})))
	if b := breakerOf(t, s, "c1-use"); b.GetState() == pb.BreakerState_BREAKER_STATE_OPEN {
		t.Fatalf("opened by 2 trailing failures under a threshold of 3: %v", b)
	}
	mustChange(t, s, 12, at(1, outcomesCmd("e2",
		&pb.EndpointOutcomes{Endpoint: "c1-use", Successes: 40},
		&pb.EndpointOutcomes{Endpoint: "c1-use", ConnectErrors: 1})))
	if b := breakerOf(t, s, "c1-use"); b.GetState() != pb.BreakerState_BREAKER_STATE_OPEN {
		t.Fatalf("2 trailing failures from e1, then e2's successes followed by 1 failure, did not open it: %v", b)
	}

	s = withBreakers(t)
	mustQuiet(t, s, 11, at(0, outcomesCmd("e1", connectErrors("c1-use", 2))))
	mustQuiet(t, s, 12, at(1, outcomesCmd("e2", &pb.EndpointOutcomes{Endpoint: "c1-use", Successes: 1, ConnectErrors: 1})))
	mustQuiet(t, s, 13, at(2, outcomesCmd("e1", connectErrors("c1-use", 2))))
	if b := breakerOf(t, s, "c1-use"); b.GetState() == pb.BreakerState_BREAKER_STATE_OPEN {
		t.Fatalf("a batch ending in success did not end the run: %v", b)
	}
}

// TestReportBatchIsEachReportInOrder: a ReportBatchOp has the effect of its
// reports applied one by one, answers for each, and a refused one does not
// stop the others.
func TestReportBatchIsEachReportInOrder(t *testing.T) {
	one, batch := withBreakers(t), withBreakers(t)
	outs := []*pb.ReportOutcomesOp{
		outcomesCmd("e1", connectErrors("c1-use", 3)).GetReportOutcomes(),
		outcomesCmd("e2", connectErrors("no-such-endpoint", 1)).GetReportOutcomes(),
		outcomesCmd("e2", connectErrors("c1-euw", 1)).GetReportOutcomes(),
	}
	health := []*pb.ReportHealthOp{checksCmd("e1", "us-east", "c1-euw", false, false).GetReportHealth()}
	for i, o := range outs {
		one.Apply(uint64(11+i), at(time.Second, &pb.Command{Op: &pb.Command_ReportOutcomes{ReportOutcomes: o}}))
	}
	one.Apply(14, at(time.Second, &pb.Command{Op: &pb.Command_ReportHealth{ReportHealth: health[0]}}))

	res, ch := batch.Apply(11, at(time.Second, &pb.Command{Op: &pb.Command_ReportBatch{ReportBatch: &pb.ReportBatchOp{Outcomes: outs, Health: health}}}))
	if res.GetError() != nil || ch == nil || res.GetRevision() != 11 {
		t.Fatalf("batch: %v, change %v", res, eventKinds(ch))
	}
	codes := []pb.CommandError_Code{}
	for _, e := range res.GetBatchErrors() {
		codes = append(codes, e.GetCode())
	}
	want := []pb.CommandError_Code{pb.CommandError_CODE_UNSPECIFIED, pb.CommandError_CODE_NOT_FOUND, pb.CommandError_CODE_UNSPECIFIED, pb.CommandError_CODE_UNSPECIFIED}
	if !slices.Equal(codes, want) {
		t.Fatalf("batch answers %v, want %v", codes, want)
	}
	for _, ep := range []string{"c1-use", "c1-euw"} {
		a, b := breakerOf(t, one, ep), breakerOf(t, batch, ep)
		if a.GetState() != b.GetState() || a.GetTrips() != b.GetTrips() {
			t.Errorf("%s: breaker %v one by one, %v batched", ep, a, b)
		}
	}
	if a, b := one.Freeze().State().GetHealth(), batch.Freeze().State().GetHealth(); len(a) != 1 || len(b) != 1 || a[0].GetVerdict() != b[0].GetVerdict() {
		t.Errorf("health %v one by one, %v batched", a, b)
	}
}
