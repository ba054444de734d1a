package proxy

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// withStatuses returns tb with the given breaker states and unhealthy
// verdicts applied as one Watch change, the way the coordinators send them.
func withStatuses(t testing.TB, tb *route.Table, open map[string]pb.BreakerState, unhealthy ...string) *route.Table {
	t.Helper()
	rev := tb.Revision() + 1
	ch := &pb.Change{Revision: rev}
	for id, s := range open {
		ch.Events = append(ch.Events, &pb.Event{Kind: &pb.Event_PutBreaker{PutBreaker: &pb.BreakerStatus{Endpoint: id, State: s, ModRevision: rev}}})
	}
	for _, id := range unhealthy {
		ch.Events = append(ch.Events, &pb.Event{Kind: &pb.Event_PutHealth{PutHealth: &pb.HealthStatus{Endpoint: id, Verdict: pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY, ModRevision: rev}}})
	}
	nt, err := tb.Apply(ch)
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

// debugGet sends GET / for key with X-Edge-Debug: 1.
func (h *harness) debugGet(t testing.TB, c *http.Client, key string) (*http.Response, string) {
	t.Helper()
	resp, body, _ := h.debugDo(t, c, "GET", key, nil)
	return resp, body
}

const (
	open     = pb.BreakerState_BREAKER_STATE_OPEN
	halfOpen = pb.BreakerState_BREAKER_STATE_HALF_OPEN
	closed   = pb.BreakerState_BREAKER_STATE_CLOSED
)

func TestChoiceSkipsOpenBreakersAndFailsOver(t *testing.T) {
	us1, us2, eu := backend(t, "us1"), backend(t, "us2"), backend(t, "eu")
	tests := []struct {
		name      string
		states    map[string]pb.BreakerState
		unhealthy []string
		status    int
		endpoints []string // any of them may serve
		route     string   // X-Edge-Route, or the 502 reason
		alt       string   // another X-Edge-Route the random pick may give
	}{
		{"all closed: own region", nil, nil, 200, []string{"us1@us-east", "us2@us-east"}, "own-region us-east", ""},
		{"one open: the other own-region endpoint", map[string]pb.BreakerState{"us1": open}, nil, 200, []string{"us2@us-east"}, "own-region us-east: 1 endpoint breaker-open", "own-region us-east"},
		{"own region out: next region by latency", map[string]pb.BreakerState{"us1": open, "us2": halfOpen}, nil, 200, []string{"eu@eu-west"},
			"failover us-east->eu-west: 1 endpoint breaker-open, 1 endpoint breaker-half-open", ""},
		{"unhealthy is skipped too", map[string]pb.BreakerState{"us1": open}, []string{"us2"}, 200, []string{"eu@eu-west"},
			"failover us-east->eu-west: 1 endpoint breaker-open, 1 endpoint unhealthy", ""},
		{"explicitly closed statuses route normally", map[string]pb.BreakerState{"us1": closed, "us2": closed}, nil, 200, []string{"us1@us-east", "us2@us-east"}, "own-region us-east", ""},
		{"all out: 502 with the reason", map[string]pb.BreakerState{"us1": open, "us2": open, "eu": open}, nil, 502, nil, "3 endpoints breaker-open", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"us1=" + us1.URL, "us2=" + us2.URL, "eu@eu-west=" + eu.URL}})
			h := startProxy(t, withStatuses(t, tb, tc.states, tc.unhealthy...), nil)
			c := client(t)
			for range 10 {
				resp, body := h.debugGet(t, c, "acme")
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
				if tc.status == 502 {
					if eb := decodeError(t, body); eb.Error != "no endpoint available" || eb.Reason != tc.route {
						t.Fatalf("502 body %+v, want reason %q", eb, tc.route)
					}
					if got := resp.Header.Get("X-Edge-Route"); got != "none: "+tc.route {
						t.Fatalf("X-Edge-Route %q", got)
					}
					continue
				}
				got := resp.Header.Get("X-Edge-Endpoint")
				if !slices.Contains(tc.endpoints, got) {
					t.Fatalf("served by %q, want one of %v", got, tc.endpoints)
				}
				if r := resp.Header.Get("X-Edge-Route"); r != tc.route && (tc.alt == "" || r != tc.alt) {
					t.Fatalf("X-Edge-Route %q, want %q", r, tc.route)
				}
			}
		})
	}
}

func TestRouteHeaderOnlyWhenAsked(t *testing.T) {
	be := backend(t, "b")
	h := startProxy(t, buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"b@eu-west=" + be.URL}}), nil)
	c := client(t)
	resp, _ := h.get(t, c, "acme", "/")
	if r, ok := resp.Header["X-Edge-Route"]; ok {
		t.Fatalf("X-Edge-Route %q sent without X-Edge-Debug", r)
	}
	if r, ok := resp.Header["X-Edge-Revision"]; ok {
		t.Fatalf("X-Edge-Revision %q sent without X-Edge-Debug", r)
	}
	resp, _ = h.debugGet(t, c, "acme")
	if r := resp.Header.Get("X-Edge-Route"); r != "failover us-east->eu-west: no endpoint in us-east" {
		t.Fatalf("X-Edge-Route %q", r)
	}
	// buildTable's first argument is the table's revision.
	if r := resp.Header.Get("X-Edge-Revision"); r != "1" {
		t.Fatalf("X-Edge-Revision %q, want the routing table's revision 1", r)
	}
}

// A refused connection trips the endpoint on this edge at once: with
// local_connect_failures 1, the very next request is not even dialled to it,
// with no coordinator involved.
func TestLocalTripSendsNextRequestElsewhere(t *testing.T) {
	eu := backend(t, "eu")
	st := &pb.State{Revision: 1, Config: &pb.RoutingConfig{
		Latencies:  []*pb.Latency{{From: "us-east", To: "eu-west", OneWayMs: 40}},
		Placements: []*pb.Placement{{Key: "acme", Cell: "c1"}},
		Cells: []*pb.Cell{{Id: "c1", Breaker: &pb.BreakerPolicy{LocalConnectFailures: 1, LocalEjectionMs: 60_000}, Endpoints: []*pb.Endpoint{
			{Id: "dead", Url: "http://" + closedAddr(t), Region: "us-east"},
			{Id: "eu", Url: eu.URL, Region: "eu-west"},
		}}},
	}}
	tb, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, tb, nil)
	c := client(t)
	debugGet := func() (string, string) {
		resp, _ := h.debugGet(t, c, "acme")
		return resp.Header.Get("X-Edge-Endpoint"), resp.Header.Get("X-Edge-Route")
	}
	if ep, r := debugGet(); ep != "eu@eu-west" || r != "failover us-east->eu-west: retried after dead unreachable" {
		t.Fatalf("first request: %s, %q", ep, r)
	}
	if n := h.metrics.dialErrors.Load(); n != 1 {
		t.Fatalf("%d dial errors after the first request, want 1", n)
	}
	for range 5 {
		if ep, r := debugGet(); ep != "eu@eu-west" || r != "failover us-east->eu-west: 1 endpoint local-trip" {
			t.Fatalf("after the trip: %s, %q", ep, r)
		}
	}
	if n := h.metrics.dialErrors.Load(); n != 1 {
		t.Fatalf("%d dial errors, want the tripped endpoint left alone", n)
	}
	// The coordinators' newer view wins over the local trip.
	h.table.Store(withStatuses(t, tb, map[string]pb.BreakerState{"dead": closed}))
	debugGet()
	if n := h.metrics.dialErrors.Load(); n != 2 {
		t.Fatalf("%d dial errors, want the endpoint tried again once the global state closed it", n)
	}
}

// The proxy counts each request's outcome on its endpoint's gate.
func TestOutcomesCounted(t *testing.T) {
	ok := backend(t, "ok")
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	t.Cleanup(failing.Close)
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1", "dead": "c2", "sick": "c3"},
		cellSpec{"c1", []string{"ok=" + ok.URL}}, cellSpec{"c2", []string{"gone=http://" + closedAddr(t)}},
		cellSpec{"c3", []string{"sick=" + failing.URL}})
	h := startProxy(t, tb, nil)
	c := client(t)
	for range 3 {
		h.get(t, c, "acme", "/")
	}
	h.get(t, c, "dead", "/")
	h.get(t, c, "sick", "/")
	h.get(t, c, "sick", "/")
	for _, tc := range []struct {
		cell string
		want *pb.EndpointOutcomes
	}{
		{"c1", &pb.EndpointOutcomes{Endpoint: "ok", Successes: 3}},
		{"c2", &pb.EndpointOutcomes{Endpoint: "gone", ConnectErrors: 1}},
		{"c3", &pb.EndpointOutcomes{Endpoint: "sick", Status_5Xx: 2}},
	} {
		it := tb.Cell(tc.cell).Candidates(0)
		if got := it.Next().Gate.TakeOutcomes(); len(got) != 1 || !proto.Equal(got[0], tc.want) {
			t.Errorf("cell %s: outcomes %v, want %v", tc.cell, got, tc.want)
		}
	}
}

// withPanicThreshold returns tb with cell id put again with the given
// panic_threshold_percent.
func withPanicThreshold(t testing.TB, tb *route.Table, id string, pct uint32) *route.Table {
	t.Helper()
	pc := proto.CloneOf(tb.Cell(id).Source())
	pc.PanicThresholdPercent = pct
	nt, err := tb.Apply(&pb.Change{Revision: tb.Revision() + 1, Events: []*pb.Event{{Kind: &pb.Event_PutCell{PutCell: pc}}}})
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

// TestPanicThreshold: below its panic threshold a cell routes over all of
// its endpoints, whatever their breakers say, in the usual order.
func TestPanicThreshold(t *testing.T) {
	us1, us2, eu := backend(t, "us1"), backend(t, "us2"), backend(t, "eu")
	allOpen := map[string]pb.BreakerState{"us1": open, "us2": open, "eu": open}
	tests := []struct {
		name      string
		threshold uint32
		states    map[string]pb.BreakerState
		status    int
		endpoints []string // any of them may serve
		route     string   // X-Edge-Route, or the 502 reason
		alt       string   // another X-Edge-Route the random pick may give
		panics    bool
	}{
		{"off: all open is 502", 0, allOpen, 502, nil, "3 endpoints breaker-open", "", false},
		{"50: all open panics", 50, allOpen, 200, []string{"us1@us-east", "us2@us-east"},
			"panic: 0 of 3 endpoints routable (threshold 50%), routing to all", "", true},
		{"50: 1 of 3 routable (33%) panics", 50, map[string]pb.BreakerState{"us1": open, "us2": open}, 200, []string{"us1@us-east", "us2@us-east"},
			"panic: 1 of 3 endpoints routable (threshold 50%), routing to all", "", true},
		{"50: 2 of 3 routable (67%) skips the bad one", 50, map[string]pb.BreakerState{"us1": open}, 200, []string{"us2@us-east"},
			"own-region us-east: 1 endpoint breaker-open", "own-region us-east", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"us1=" + us1.URL, "us2=" + us2.URL, "eu@eu-west=" + eu.URL}})
			h := startProxy(t, withStatuses(t, withPanicThreshold(t, tb, "c1", tc.threshold), tc.states), nil)
			c := client(t)
			for range 10 {
				resp, body := h.debugGet(t, c, "acme")
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
				}
				if tc.status == 502 {
					if eb := decodeError(t, body); eb.Error != "no endpoint available" || eb.Reason != tc.route {
						t.Fatalf("502 body %+v, want reason %q", eb, tc.route)
					}
					continue
				}
				if got := resp.Header.Get("X-Edge-Endpoint"); !slices.Contains(tc.endpoints, got) {
					t.Fatalf("served by %q, want one of %v", got, tc.endpoints)
				}
				if r := resp.Header.Get("X-Edge-Route"); r != tc.route && (tc.alt == "" || r != tc.alt) {
					t.Fatalf("X-Edge-Route %q, want %q", r, tc.route)
				}
			}
			if want := map[bool]uint64{true: 10}[tc.panics]; h.metrics.panics.Load() != want {
				t.Fatalf("%d panic requests counted, want %d", h.metrics.panics.Load(), want)
			}
		})
	}
}

// In panic the retry budget still holds: dead endpoints are tried (their
// gates are ignored too), one retry, then 502 saying both why.
func TestPanicWithDeadEndpoints(t *testing.T) {
	eu := backend(t, "eu")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
		"d1=http://" + closedAddr(t), "eu@eu-west=" + eu.URL,
	}})
	tb = withStatuses(t, withPanicThreshold(t, tb, "c1", 100), map[string]pb.BreakerState{"eu": open})
	h := startProxy(t, tb, nil)
	resp, _ := h.debugGet(t, client(t), "acme")
	if resp.StatusCode != 200 || resp.Header.Get("X-Edge-Endpoint") != "eu@eu-west" {
		t.Fatalf("%d from %q, want the open-breaker endpoint to serve in panic", resp.StatusCode, resp.Header.Get("X-Edge-Endpoint"))
	}
	if r := resp.Header.Get("X-Edge-Route"); r != "panic: 1 of 2 endpoints routable (threshold 100%), routing to all; retried after d1 unreachable" {
		t.Fatalf("X-Edge-Route %q", r)
	}

	tb = buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{
		"d1=http://" + closedAddr(t), "d2=http://" + closedAddr(t), "d3@eu-west=http://" + closedAddr(t),
	}})
	h.table.Store(withStatuses(t, withPanicThreshold(t, tb, "c1", 50), map[string]pb.BreakerState{"d1": open, "d2": open, "d3": open}))
	before := h.metrics.dialErrors.Load()
	resp, body := h.debugGet(t, client(t), "acme")
	want := "panic: 0 of 3 endpoints routable (threshold 50%), routing to all; upstream unreachable after 2 attempts"
	if eb := decodeError(t, body); resp.StatusCode != 502 || eb.Error != "no endpoint reachable" || eb.Reason != want {
		t.Fatalf("%d %+v, want 502 with reason %q", resp.StatusCode, eb, want)
	}
	if n := h.metrics.dialErrors.Load() - before; n != 2 {
		t.Fatalf("%d dials failed, want 2", n)
	}
}
