package loadtest

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// SchemaVersion names the JSON report's format; it changes only when a field
// changes meaning or goes away (new fields may appear).
const SchemaVersion = "edgecell.loadtest/v1"

// Report is the result of a run. Its JSON form (the field tags) is the
// --json file; every duration is in milliseconds (_ms) or seconds (_s).
type Report struct {
	Schema    string    `json:"schema"`
	Scenario  string    `json:"scenario"`
	StartedAt time.Time `json:"started_at"`
	// DurationS is how long the load ran, waiting for the last answers included.
	DurationS float64 `json:"duration_s"`
	// TargetRPS is the total scheduled rate.
	TargetRPS float64         `json:"target_rps"`
	Mix       map[Kind]int    `json:"mix"`
	Regions   []RegionReport  `json:"regions"`
	Replays   ReplayReport    `json:"replays"`
	Events    []Event         `json:"events"`
	Overhead  OverheadReport  `json:"overhead"`
	Config    *PropagationLag `json:"config_propagation,omitempty"`
	// Invariants are the checks whose failure makes the run fail.
	Invariants []Invariant `json:"invariants"`
	// OK is false when an invariant that was checked has violations.
	OK bool `json:"ok"`
}

// RegionReport is what one client region saw.
type RegionReport struct {
	Region    string  `json:"region"`
	Edge      string  `json:"edge"`
	TargetRPS float64 `json:"target_rps"`
	// Total is every kind together (its Kind is "all").
	Total KindReport   `json:"total"`
	Kinds []KindReport `json:"kinds"`
	// Failovers is how many requests another region's edge answered.
	Failovers int64 `json:"failovers"`
	// FailoverGapMs is the longest time without an acceptable answer, and
	// FailoverGapAtS when it began.
	FailoverGapMs  float64         `json:"failover_gap_ms"`
	FailoverGapAtS float64         `json:"failover_gap_at_s"`
	Timeline       []TimelinePoint `json:"timeline"`
}

// KindReport is the outcome of one kind of request from one region.
type KindReport struct {
	Kind Kind `json:"kind"`
	// Requests were scheduled; OK got an acceptable answer (2xx; 401 for a replay).
	Requests int64   `json:"requests"`
	OK       int64   `json:"ok"`
	RPS      float64 `json:"rps"`
	// Latency is from the scheduled send time to the end of the answer.
	Latency Percentiles `json:"latency_ms"`
	// Errors by class: connect, timeout, reset, other, client-saturated,
	// replay-accepted, and "4xx:<code>" / "5xx:<code>" by status.
	Errors map[string]int64 `json:"errors"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// TimelinePoint is one second of one region, by scheduled send time.
type TimelinePoint struct {
	Second   int     `json:"t_s"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
}

// ReplayReport counts replays: Blocked got 401; Accepted got 2xx (each one
// an invariant violation); Fallbacks were sent as signed requests because
// nothing had been accepted yet to replay.
type ReplayReport struct {
	Sent      int64 `json:"sent"`
	Blocked   int64 `json:"blocked"`
	Accepted  int64 `json:"accepted"`
	Fallbacks int64 `json:"fallbacks"`
}

// Event is a scenario step that ran, at AtS seconds from the start.
type Event struct {
	AtS    float64 `json:"at_s"`
	Action string  `json:"action"`
	Detail string  `json:"detail,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// OverheadReport is the tool's own limit: how late requests left compared
// with their schedule (a high value means the tool, not the cluster, is the
// bottleneck), requests not sent for the in-flight cap, and the peak.
type OverheadReport struct {
	ScheduleLag     Percentiles `json:"schedule_lag_ms"`
	ClientSaturated int64       `json:"client_saturated"`
	MaxInFlight     int64       `json:"max_in_flight"`
	AchievedRPS     float64     `json:"achieved_rps"`
}

// PropagationLag is config propagation lag: from a write's acknowledgement
// to every running edge having applied it.
type PropagationLag struct {
	Writes  int64       `json:"writes"`
	Lag     Percentiles `json:"lag_ms"`
	Pending int         `json:"not_applied_at_end"`
}

// Invariant is one check. Checked is false when the run could not check it
// (Detail says why); only checked invariants with violations fail the run.
type Invariant struct {
	Name       string `json:"name"`
	Checked    bool   `json:"checked"`
	Violations int64  `json:"violations"`
	Detail     string `json:"detail,omitempty"`
}

// The invariants' names.
const (
	InvariantNoAcceptedReplay   = "no-accepted-replay"
	InvariantNoLostWrite        = "no-lost-acknowledged-write"
	InvariantNoRouteOpenBreaker = "no-route-to-open-breaker"
)

// Err is nil when every checked invariant held, else an error wrapping
// ErrInvariant that names the broken ones.
func (rep *Report) Err() error {
	var broken []string
	for _, inv := range rep.Invariants {
		if inv.Checked && inv.Violations > 0 {
			broken = append(broken, fmt.Sprintf("%s (%d violations)", inv.Name, inv.Violations))
		}
	}
	if len(broken) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvariant, strings.Join(broken, ", "))
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50: micros(h.ValueAtQuantile(50)), P90: micros(h.ValueAtQuantile(90)),
		P99: micros(h.ValueAtQuantile(99)), P999: micros(h.ValueAtQuantile(99.9)), Max: micros(h.Max()),
	}
}

func kindReport(kind Kind, k *kindStats, seconds float64) KindReport {
	errs := make(map[string]int64, len(k.errors))
	for c, n := range k.errors {
		errs[c] = n
	}
	return KindReport{Kind: kind, Requests: k.requests, OK: k.ok, RPS: float64(k.requests) / seconds, Latency: percentiles(k.hist), Errors: errs}
}

func (r *runner) report(elapsed time.Duration) *Report {
	seconds := r.plan.Duration.Seconds()
	rep := &Report{
		Schema: SchemaVersion, Scenario: r.plan.Name, StartedAt: r.start.UTC(), DurationS: elapsed.Seconds(),
		Mix: r.plan.Mix, Events: append([]Event{}, r.events...), OK: true,
	}
	sort.Slice(rep.Events, func(i, j int) bool { return rep.Events[i].AtS < rep.Events[j].AtS })
	lag := newHist()
	for _, rc := range r.regions {
		rc.stats.settle(int(elapsed/time.Second) + 1)
		s := rc.stats
		s.mu.Lock()
		s.success(elapsed) // the gap to the end counts too
		rr := RegionReport{
			Region: rc.region, Edge: rc.order[0].url, TargetRPS: rc.rate,
			Total: kindReport("all", s.all, seconds), Failovers: s.failovers,
			FailoverGapMs: float64(s.gap) / float64(time.Millisecond), FailoverGapAtS: s.gapStart.Seconds(),
		}
		for _, kind := range Kinds {
			if k := s.kinds[kind]; k != nil {
				rr.Kinds = append(rr.Kinds, kindReport(kind, k, seconds))
			}
		}
		if k := s.kinds[KindReplay]; k != nil {
			rep.Replays.Sent += k.requests
		}
		rep.Replays.Blocked += s.replaysBlocked
		rep.Replays.Accepted += s.replaysAccepted
		rep.Overhead.ClientSaturated += s.all.errors[ClassSaturated]
		lag.Merge(s.lag)
		s.mu.Unlock()
		rr.Timeline = s.timelinePoints()
		rep.TargetRPS += rc.rate
		rep.Regions = append(rep.Regions, rr)
	}
	rep.Replays.Fallbacks = r.replayFallbacks.Load()
	rep.Overhead.ScheduleLag = percentiles(lag)
	rep.Overhead.MaxInFlight = r.counters.maxInFlight.Load()
	rep.Overhead.AchievedRPS = float64(r.counters.scheduled.Load()-rep.Overhead.ClientSaturated) / seconds
	if p := r.propagation; p != nil {
		p.mu.Lock()
		rep.Config = &PropagationLag{Writes: p.hist.TotalCount(), Lag: percentiles(p.hist), Pending: len(p.pending)}
		p.mu.Unlock()
	}
	rep.Invariants = append(rep.Invariants, Invariant{
		Name: InvariantNoAcceptedReplay, Checked: rep.Replays.Sent > 0, Violations: rep.Replays.Accepted,
		Detail: fmt.Sprintf("%d replays sent to another region's edge, %d refused with 401", rep.Replays.Sent, rep.Replays.Blocked),
	})
	if c := r.churn; c != nil {
		c.mu.Lock()
		rep.Invariants = append(rep.Invariants, Invariant{Name: InvariantNoLostWrite, Checked: c.checked, Violations: int64(c.violations), Detail: c.detail})
		c.mu.Unlock()
	} else {
		rep.Invariants = append(rep.Invariants, Invariant{Name: InvariantNoLostWrite, Detail: "checked only when the scenario churns placements"})
	}
	if r.breakers != nil {
		rep.Invariants = append(rep.Invariants, r.breakers.check(5*time.Second))
	} else {
		rep.Invariants = append(rep.Invariants, Invariant{
			Name:   InvariantNoRouteOpenBreaker,
			Detail: "not checked: needs the coordinators' Watch stream (--cluster dev)",
		})
	}
	rep.OK = rep.Err() == nil
	return rep
}

// WriteTable writes the report as aligned tables.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "scenario %s: %.1fs at %.0f rps scheduled (%.0f achieved)\n\n", rep.Scenario, rep.DurationS, rep.TargetRPS, rep.Overhead.AchievedRPS)
	fmt.Fprintln(tw, "region\tkind\trequests\tok\trps\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t")
	for _, rr := range rep.Regions {
		for _, k := range append(rr.Kinds, rr.Total) {
			l := k.Latency
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n",
				rr.Region, k.Kind, k.Requests, k.OK, k.RPS, l.P50, l.P90, l.P99, l.P999, l.Max, errorList(k.Errors))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "region\tedge\tfailovers\tlongest gap ms\tgap at s\t")
	for _, rr := range rep.Regions {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.1f\t\n", rr.Region, rr.Edge, rr.Failovers, rr.FailoverGapMs, rr.FailoverGapAtS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nreplays: %d sent, %d blocked, %d accepted, %d sent as signed (nothing to replay yet)\n",
		rep.Replays.Sent, rep.Replays.Blocked, rep.Replays.Accepted, rep.Replays.Fallbacks)
	if c := rep.Config; c != nil {
		fmt.Fprintf(w, "config propagation (write acknowledged -> every edge applied): %d writes, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d not applied at the end\n",
			c.Writes, c.Lag.P50, c.Lag.P99, c.Lag.Max, c.Pending)
	}
	if len(rep.Events) > 0 {
		fmt.Fprintln(w, "\nevents:")
		for _, e := range rep.Events {
			line := fmt.Sprintf("  %7.2fs  %s %s", e.AtS, e.Action, e.Detail)
			if e.Error != "" {
				line += "  error: " + e.Error
			}
			fmt.Fprintln(w, line)
		}
	}
	o := rep.Overhead
	fmt.Fprintf(w, "\nload tool overhead: schedule lag p50 %.2f ms, p99 %.2f ms, max %.2f ms; %d not sent (in-flight cap); peak %d in flight\n",
		o.ScheduleLag.P50, o.ScheduleLag.P99, o.ScheduleLag.Max, o.ClientSaturated, o.MaxInFlight)
	fmt.Fprintln(w, "\ninvariants:")
	for _, inv := range rep.Invariants {
		verdict := "ok"
		switch {
		case !inv.Checked:
			verdict = "not checked"
		case inv.Violations > 0:
			verdict = fmt.Sprintf("BROKEN (%d)", inv.Violations)
		}
		fmt.Fprintf(w, "  %-28s %-12s %s\n", inv.Name, verdict, inv.Detail)
	}
	return nil
}

func errorList(errs map[string]int64) string {
	if len(errs) == 0 {
		return "-"
	}
	var parts []string
	for c, n := range errs {
		parts = append(parts, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// errNoRegions is returned by WriteHTML for a report without regions.
var errNoRegions = errors.New("loadtest: the report has no regions")
