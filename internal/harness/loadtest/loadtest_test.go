package loadtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

// blockingServer answers every request only once release is closed, and
// counts arrivals.
func blockingServer(t *testing.T) (url string, arrived *atomic.Int64, release chan struct{}) {
	t.Helper()
	arrived, release = &atomic.Int64{}, make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return srv.URL, arrived, release
}

func plainPlan(d time.Duration, rate float64) Plan {
	return Plan{Name: "test", Duration: d, TotalRate: rate, Mix: Mix{KindPlain: 1}}
}

// TestSlowTargetDoesNotLowerSendRate: open loop. A target that answers
// nothing still receives every scheduled request, and the latency of the
// first one covers the whole wait.
func TestSlowTargetDoesNotLowerSendRate(t *testing.T) {
	url, arrived, release := blockingServer(t)
	const rate, want = 200, 100 // half a second
	done := make(chan *Report, 1)
	go func() {
		rep, err := Run(context.Background(), Options{Plan: plainPlan(500*time.Millisecond, rate), Target: Target{Edges: map[string]string{"r1": url}}})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	testutil.Poll(t, "every scheduled request to arrive while none is answered", func() bool { return arrived.Load() == want })
	blockedFor := time.Now()
	close(release)
	rep := <-done
	if rep == nil {
		t.FailNow()
	}
	total := rep.Regions[0].Total
	if total.Requests != want || total.OK != want {
		t.Fatalf("requests %d ok %d, want %d both (errors %v)", total.Requests, total.OK, want, total.Errors)
	}
	// The first request was scheduled at the start and answered after the
	// release: from its schedule, that is at least this long.
	if min := float64(blockedFor.Sub(rep.StartedAt).Milliseconds()); total.Latency.Max < min {
		t.Errorf("max latency %.1f ms, want >= %.0f ms (measured from the scheduled time)", total.Latency.Max, min)
	}
	if rep.Overhead.MaxInFlight != want {
		t.Errorf("peak in flight %d, want %d", rep.Overhead.MaxInFlight, want)
	}
}

// TestLatencyFromScheduledTime: a request sent late (the tool fell behind)
// reports its latency and its lag from when it was due, not from when it left.
func TestLatencyFromScheduledTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	r, err := newRunner(Options{Plan: plainPlan(time.Second, 1), Target: Target{Edges: map[string]string{"r1": srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	r.start = time.Now().Add(-time.Second) // due a second ago
	rc := r.regions[0]
	r.do(context.Background(), rc, 0, 0)
	rep := r.report(time.Second)
	total := rep.Regions[0].Total
	if total.OK != 1 {
		t.Fatalf("ok %d, want 1: %v", total.OK, total.Errors)
	}
	if total.Latency.P50 < 1000 {
		t.Errorf("latency %.1f ms, want >= 1000 ms: measured from the scheduled time", total.Latency.P50)
	}
	if rep.Overhead.ScheduleLag.P50 < 1000 {
		t.Errorf("schedule lag %.1f ms, want >= 1000 ms", rep.Overhead.ScheduleLag.P50)
	}
}

// TestInFlightCapCountsSaturation: requests due while the cap is reached are
// not sent and count as client-saturated.
func TestInFlightCapCountsSaturation(t *testing.T) {
	url, arrived, release := blockingServer(t)
	r, err := newRunner(Options{Plan: plainPlan(500*time.Millisecond, 100), Target: Target{Edges: map[string]string{"r1": url}}, MaxInFlight: 5})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *Report, 1)
	go func() { done <- r.run(context.Background()) }()
	testutil.Poll(t, "every request to be scheduled", func() bool { return r.counters.scheduled.Load() == 50 })
	close(release)
	rep := <-done
	total := rep.Regions[0].Total
	if arrived.Load() != 5 || total.OK != 5 || total.Errors[ClassSaturated] != 45 || rep.Overhead.ClientSaturated != 45 {
		t.Fatalf("arrived %d, ok %d, errors %v, saturated %d; want 5 sent and 45 client-saturated",
			arrived.Load(), total.OK, total.Errors, rep.Overhead.ClientSaturated)
	}
}

// TestAnycastFailover: clients whose own edge refuses connections are
// served by the next nearest edge, without errors.
func TestAnycastFailover(t *testing.T) {
	var farServed atomic.Int64
	near := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	far := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { farServed.Add(1) }))
	defer near.Close()
	defer far.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // refuses connections from now on

	rep, err := Run(context.Background(), Options{
		Plan: Plan{Name: "test", Duration: 500 * time.Millisecond, Rates: map[string]float64{"a": 100}, Mix: Mix{KindPlain: 1}},
		Target: Target{
			Edges: map[string]string{"a": deadURL, "b": far.URL, "c": near.URL},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Without a latency matrix, the other regions come in name order: b.
	a := rep.Regions[0]
	if a.Total.OK != 50 || a.Failovers != 50 || farServed.Load() != 50 {
		t.Fatalf("ok %d, failovers %d, served by b %d, errors %v; want all 50 served by b", a.Total.OK, a.Failovers, farServed.Load(), a.Total.Errors)
	}
}

// TestFailoverOrderFollowsLatency: the nearest region comes first, whatever
// its name; a pair given once applies both ways.
func TestFailoverOrderFollowsLatency(t *testing.T) {
	edges := map[string]string{"a": "x", "b": "x", "c": "x"}
	order := failoverOrder(edges, []*pb.Latency{{From: "a", To: "b", OneWayMs: 90}, {From: "c", To: "a", OneWayMs: 10}})
	if got := strings.Join(order["a"], ","); got != "a,c,b" {
		t.Errorf("from a: %s, want a,c,b", got)
	}
	if got := strings.Join(order["b"], ","); got != "b,a,c" {
		t.Errorf("from b: %s, want b,a,c (c unknown: last)", got)
	}
}

// TestAcceptedReplayBreaksTheRun: an edge that accepts a replayed request
// makes the report fail its invariant.
func TestAcceptedReplayBreaksTheRun(t *testing.T) {
	var signed atomic.Int64
	lax := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Signature") != "" {
			signed.Add(1)
		}
	})
	e1, e2 := httptest.NewServer(lax), httptest.NewServer(lax)
	defer e1.Close()
	defer e2.Close()
	rep, err := Run(context.Background(), Options{
		Plan:   Plan{Name: "test", Duration: 500 * time.Millisecond, Rates: map[string]float64{"r1": 100}, Mix: Mix{KindSigned: 1, KindReplay: 1}},
		Target: Target{Edges: map[string]string{"r1": e1.URL, "r2": e2.URL}, KeyID: "k_test", Secret: "s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replays.Accepted == 0 || rep.OK || !errors.Is(rep.Err(), ErrInvariant) {
		t.Fatalf("replays %+v, ok %v, err %v; want accepted replays to break the run", rep.Replays, rep.OK, rep.Err())
	}
	if !strings.Contains(rep.Err().Error(), InvariantNoAcceptedReplay) {
		t.Errorf("error %q does not name %s", rep.Err(), InvariantNoAcceptedReplay)
	}
	if signed.Load() != 50 {
		t.Errorf("%d signed requests arrived, want 50 (25 signed, 25 replays)", signed.Load())
	}
}

// TestFaultStepsNeedController: a process-control step without a dev
// cluster is refused before anything is sent, naming the step.
func TestFaultStepsNeedController(t *testing.T) {
	p, err := Builtin("leader-kill")
	if err != nil {
		t.Fatal(err)
	}
	p.TotalRate, p.Mix = 10, Mix{KindPlain: 1}
	_, err = Run(context.Background(), Options{Plan: p, Target: Target{Edges: map[string]string{"r1": "http://127.0.0.1:1"}}})
	if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), "steps[0]: kill-leader needs control") || !strings.Contains(err.Error(), "--cluster dev") {
		t.Fatalf("err = %v; want steps[0] refused, pointing at --cluster dev", err)
	}
}

// TestPartitionNeedsSimulatedNetwork: a partition step with a Controller
// that cannot cut links (a dev cluster without latency simulation) is
// refused before anything is sent.
func TestPartitionNeedsSimulatedNetwork(t *testing.T) {
	p, err := Builtin("region-partition")
	if err != nil {
		t.Fatal(err)
	}
	p.TotalRate, p.Mix = 10, Mix{KindPlain: 1}
	edges := map[string]string{"ap-south": "http://127.0.0.1:1"}
	_, err = Run(context.Background(), Options{Plan: p, Target: Target{Edges: edges, Controller: &devController{}}})
	if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), "steps[0]: partition-region") || !strings.Contains(err.Error(), "--simulate-latency") {
		t.Fatalf("err = %v; want steps[0] refused, pointing at --simulate-latency", err)
	}
}

// TestJWTRequests: jwt requests carry the JWT routing key and a bearer token
// from the issuer, which reuses a token rather than minting one per request;
// without a token source they are refused before anything is sent.
func TestJWTRequests(t *testing.T) {
	iss, err := NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	var bearer, other atomic.Int64
	tokens := make(chan string, 100)
	edge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || r.Header.Get("X-Routing-Key") != "jwt-key" {
			other.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		bearer.Add(1)
		select {
		case tokens <- tok:
		default:
		}
	}))
	defer edge.Close()
	plan := Plan{Name: "test", Duration: 500 * time.Millisecond, TotalRate: 100, Mix: Mix{KindJWT: 1}}
	target := Target{Edges: map[string]string{"r1": edge.URL}, JWTKey: "jwt-key", JWTToken: iss.Token}
	rep, err := Run(context.Background(), Options{Plan: plan, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if k := rep.Regions[0].Kinds; len(k) != 1 || k[0].Kind != KindJWT || k[0].OK != 50 || bearer.Load() != 50 || other.Load() != 0 {
		t.Fatalf("kinds %+v, bearer requests %d, others %d; want 50 jwt requests, all with a bearer token", k, bearer.Load(), other.Load())
	}
	first := <-tokens
	if parts := strings.Split(first, "."); len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", first)
	}
	for len(tokens) > 0 {
		if tok := <-tokens; tok != first {
			t.Fatal("a new token was minted within the reuse period")
		}
	}

	target.JWTToken = nil
	if _, err := Run(context.Background(), Options{Plan: plan, Target: target}); !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), "--jwt-token") {
		t.Fatalf("jwt mix without a token: %v, want refused naming --jwt-token", err)
	}
}
