package loadtest

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Error classes of a request that got no acceptable answer.
const (
	ClassConnect   = "connect"          // no connection could be made (refused, unreachable)
	ClassTimeout   = "timeout"          // no complete answer within the request timeout
	ClassReset     = "reset"            // the connection broke mid-exchange
	ClassOther     = "other"            // any other transport error
	ClassSaturated = "client-saturated" // not sent: the region's in-flight cap was reached
)

// statusClass is the error class of an unacceptable status: "4xx:401".
func statusClass(code int) string { return fmt.Sprintf("%dxx:%d", code/100, code) }

// Replay verdicts.
const (
	replayNone = iota
	replayBlocked
	replayAccepted
)

// outcome is what happened to one scheduled request; times are offsets
// from the run's start.
type outcome struct {
	kind      Kind
	scheduled time.Duration
	lag       time.Duration // sent - scheduled; 0 when not sent
	done      time.Duration // when the answer was read (or the error met)
	class     string        // "" when acceptable
	failover  bool          // served by another region's edge
	replay    int
}

const (
	histMax     = int64(10 * time.Minute / time.Microsecond)
	histSigFigs = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, histSigFigs) }

func recordMicros(h *hdrhistogram.Histogram, d time.Duration) {
	v := d.Microseconds()
	if v < 1 {
		v = 1
	}
	if v > histMax {
		v = histMax
	}
	h.RecordValue(v)
}

type kindStats struct {
	requests, ok int64
	hist         *hdrhistogram.Histogram // latency of every sent request, from its schedule
	errors       map[string]int64
}

func newKindStats() *kindStats { return &kindStats{hist: newHist(), errors: map[string]int64{}} }

func (k *kindStats) add(o *outcome) {
	k.requests++
	if o.class == "" {
		k.ok++
	} else {
		k.errors[o.class]++
	}
	if o.class != ClassSaturated {
		recordMicros(k.hist, o.done-o.scheduled)
	}
}

type secondStats struct {
	requests, errors int64
	hist             *hdrhistogram.Histogram
}

// regionStats accumulates one client region's outcomes.
type regionStats struct {
	mu        sync.Mutex
	kinds     map[Kind]*kindStats
	all       *kindStats
	lag       *hdrhistogram.Histogram
	seconds   map[int]*secondStats
	timeline  map[int]TimelinePoint
	failovers int64

	lastOK   time.Duration
	gap      time.Duration
	gapStart time.Duration

	replaysBlocked, replaysAccepted int64
}

func newRegionStats() *regionStats {
	return &regionStats{
		kinds: map[Kind]*kindStats{}, all: newKindStats(), lag: newHist(),
		seconds: map[int]*secondStats{}, timeline: map[int]TimelinePoint{},
	}
}

func (r *regionStats) add(o *outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[o.kind]
	if k == nil {
		k = newKindStats()
		r.kinds[o.kind] = k
	}
	k.add(o)
	r.all.add(o)
	if o.class != ClassSaturated {
		recordMicros(r.lag, o.lag)
	}
	if o.failover {
		r.failovers++
	}
	switch o.replay {
	case replayBlocked:
		r.replaysBlocked++
	case replayAccepted:
		r.replaysAccepted++
	}
	sec := int(o.scheduled / time.Second)
	s := r.seconds[sec]
	if s == nil {
		s = &secondStats{hist: hdrhistogram.New(1, histMax, 2)}
		r.seconds[sec] = s
	}
	s.requests++
	if o.class != "" {
		s.errors++
	}
	if o.class != ClassSaturated {
		recordMicros(s.hist, o.done-o.scheduled)
	}
	if o.class == "" {
		r.success(o.done)
	}
}

// success notes an acceptable answer at t: the failover gap is the longest
// time between two of them (or from the start to the first).
func (r *regionStats) success(t time.Duration) {
	if t <= r.lastOK {
		return
	}
	if g := t - r.lastOK; g > r.gap {
		r.gap, r.gapStart = g, r.lastOK
	}
	r.lastOK = t
}

// settle turns the per-second histograms of seconds before upTo into
// timeline points, so memory stays bounded on long runs.
func (r *regionStats) settle(upTo int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for sec, s := range r.seconds {
		if sec >= upTo {
			continue
		}
		p := TimelinePoint{Second: sec, Requests: s.requests, Errors: s.errors}
		if s.hist.TotalCount() > 0 {
			p.P50Ms = micros(s.hist.ValueAtQuantile(50))
			p.P99Ms = micros(s.hist.ValueAtQuantile(99))
		}
		r.timeline[sec] = p
		delete(r.seconds, sec)
	}
}

func (r *regionStats) timelinePoints() []TimelinePoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]TimelinePoint, 0, len(r.timeline)) // [] in JSON, not null
	for _, p := range r.timeline {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Second < out[j].Second })
	return out
}

func micros(v int64) float64 { return float64(v) / 1000 }

// counters are the run-wide totals the progress line reads.
type counters struct {
	scheduled, completed, errors, inFlight, maxInFlight atomic.Int64
	replaysAccepted                                     atomic.Int64
}

func (c *counters) noteInFlight(n int64) {
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			return
		}
	}
}
