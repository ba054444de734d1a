package proxy

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's counters. Updating them on the request path is a
// few atomic adds: the per-status counters are a plain array read by a
// custom collector, not label lookups.
type Metrics struct {
	codes        [600]atomic.Uint64
	dialErrors   atomic.Uint64
	staleRetries atomic.Uint64
	retries      atomic.Uint64
	panics       atomic.Uint64
	auth         [numAuthResults]atomic.Uint64
	timeouts     [numTimeouts]atomic.Uint64
	upstreamTime prometheus.Histogram

	requestsDesc, dialDesc, staleDesc, retryDesc, panicDesc, authDesc, timeoutDesc *prometheus.Desc
}

// clientTimeout is which client timeout closed a connection.
type clientTimeout uint8

const (
	timeoutHead   clientTimeout = iota // HeadTimeout: a head not whole in time (408)
	timeoutIdle                        // ClientIdleTimeout: no next request
	timeoutTunnel                      // TunnelIdleTimeout: a tunnel idle both ways
	numTimeouts
)

var timeoutNames = [numTimeouts]string{"head", "idle", "tunnel"}

func (m *Metrics) timeout(t clientTimeout) {
	if m != nil {
		m.timeouts[t].Add(1)
	}
}

// Timeouts returns how many client connections the timeout named kind
// ("head", "idle", "tunnel") closed; for tests and diagnostics.
func (m *Metrics) Timeouts(kind string) uint64 {
	for t, name := range timeoutNames {
		if name == kind {
			return m.timeouts[t].Load()
		}
	}
	return 0
}

// NewMetrics creates the proxy metrics; register them with Register.
func NewMetrics() *Metrics {
	return &Metrics{
		upstreamTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgecell_edge_upstream_response_seconds",
			Help:    "Time from sending a request upstream to receiving its response head.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		requestsDesc: prometheus.NewDesc("edgecell_edge_requests_total",
			"Requests answered by the edge, by HTTP status code.", []string{"code"}, nil),
		dialDesc: prometheus.NewDesc("edgecell_edge_upstream_dial_errors_total",
			"Connections to endpoints that could not be made.", nil, nil),
		staleDesc: prometheus.NewDesc("edgecell_edge_upstream_stale_retries_total",
			"Requests resent on a fresh connection after a pooled one turned out closed.", nil, nil),
		retryDesc: prometheus.NewDesc("edgecell_edge_upstream_retries_total",
			"Requests sent to another endpoint after the first one could not be reached or failed before responding (at most one retry per request).", nil, nil),
		panicDesc: prometheus.NewDesc("edgecell_edge_panic_requests_total",
			"Requests routed over all of their cell's endpoints, ignoring breakers and health, because fewer than the cell's panic threshold were routable.", nil, nil),
		authDesc: prometheus.NewDesc("edgecell_edge_auth_total",
			"Requests to cells with an auth policy, by outcome: ok, or why they were refused (missing, repeated or malformed signing headers count as bad_signature; a bad or missing bearer token as bad_token; coordinators or a key set unreachable as unavailable).",
			[]string{"result"}, nil),
		timeoutDesc: prometheus.NewDesc("edgecell_edge_client_timeouts_total",
			"Client connections closed by a timeout: head (a request head not whole within the head timeout, answered 408), idle (no next request within the keep-alive timeout), tunnel (an upgraded connection idle both ways).",
			[]string{"timeout"}, nil),
	}
}

func (m *Metrics) authResult(r authResult) {
	if m != nil {
		m.auth[r].Add(1)
	}
}

func (m *Metrics) code(status int) {
	if m == nil {
		return
	}
	if status < 0 || status >= len(m.codes) {
		status = 0
	}
	m.codes[status].Add(1)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.requestsDesc
	ch <- m.dialDesc
	ch <- m.staleDesc
	ch <- m.retryDesc
	ch <- m.panicDesc
	ch <- m.authDesc
	ch <- m.timeoutDesc
	m.upstreamTime.Describe(ch)
}

// Collect implements prometheus.Collector; status codes never seen are not exported.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for code := range m.codes {
		if n := m.codes[code].Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.CounterValue, float64(n), strconv.Itoa(code))
		}
	}
	ch <- prometheus.MustNewConstMetric(m.dialDesc, prometheus.CounterValue, float64(m.dialErrors.Load()))
	ch <- prometheus.MustNewConstMetric(m.staleDesc, prometheus.CounterValue, float64(m.staleRetries.Load()))
	ch <- prometheus.MustNewConstMetric(m.retryDesc, prometheus.CounterValue, float64(m.retries.Load()))
	ch <- prometheus.MustNewConstMetric(m.panicDesc, prometheus.CounterValue, float64(m.panics.Load()))
	for r := range m.auth {
		ch <- prometheus.MustNewConstMetric(m.authDesc, prometheus.CounterValue, float64(m.auth[r].Load()), authResult(r).String())
	}
	for t := range m.timeouts {
		ch <- prometheus.MustNewConstMetric(m.timeoutDesc, prometheus.CounterValue, float64(m.timeouts[t].Load()), timeoutNames[t])
	}
	m.upstreamTime.Collect(ch)
}

// Requests returns how many responses carried status code; for tests and diagnostics.
func (m *Metrics) Requests(code int) uint64 {
	if code < 0 || code >= len(m.codes) {
		return 0
	}
	return m.codes[code].Load()
}

// Auth returns how many requests had the auth outcome result ("ok",
// "replay", ...; see edgecell_edge_auth_total); for tests and diagnostics.
func (m *Metrics) Auth(result string) uint64 {
	for r, name := range authResultNames {
		if name == result {
			return m.auth[r].Load()
		}
	}
	return 0
}
