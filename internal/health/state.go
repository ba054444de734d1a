package health

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

// Verdict is what is known of an endpoint's health. The zero value is Unknown.
type Verdict uint8

const (
	// Unknown: no majority yet. Routers treat it as routable.
	Unknown Verdict = iota
	Healthy
	Unhealthy
)

// String returns "unknown", "healthy" or "unhealthy", the words the CLI prints.
func (v Verdict) String() string {
	switch v {
	case Unknown:
		return "unknown"
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "invalid"
}

// Check is the result of one active health check.
type Check struct {
	OK bool
	// Detail says what was seen, for operators: "HTTP 503", "connect: connection refused".
	Detail string
}

// Report is one edge's batch of check results for one endpoint, oldest first.
type Report struct {
	Edge, Region string
	Checks       []Check
}

// Observation is what one edge has seen of the endpoint, for `edgecell health`.
type Observation struct {
	Edge, Region string
	Verdict      Verdict
	// Passes and Failures are the current run of consecutive results; one of
	// them is zero.
	Passes, Failures uint32
	LastReport       time.Time
	// Detail is the last check's.
	Detail string
	// Stale: the edge has not reported for StaleAfter, as of the latest time
	// the State has seen; it does not count towards the verdict.
	Stale bool
}

// Status is the endpoint's replicated verdict.
type Status struct {
	Verdict Verdict
	// Since is when the verdict last changed; zero while Unknown from the start.
	Since time.Time
	// Reason explains the last change, for example "unhealthy: 2 of 3 fresh
	// edges say unhealthy".
	Reason string
}

// State is one endpoint's health as the coordinators replicate it. It is a
// value: copies are independent (methods replace the observation slice, never
// write into one a copy may share), and the same calls with the same times
// give equal states. Create one with New. Methods are not safe for
// concurrent use; the raft apply goroutine owns the copy it modifies.
type State struct {
	s fields
}

// fields is the whole state, exported only for MarshalBinary.
type fields struct {
	Policy  policy.Health
	Verdict Verdict
	Since   int64
	Reason  string
	// Now is the latest time seen, in Unix nanoseconds.
	Now int64
	// Edges is sorted by ID and never modified in place.
	Edges []edge
}

type edge struct {
	ID, Region       string
	Verdict          Verdict
	Passes, Failures uint32
	Last             int64
	Detail           string
}

// New returns an endpoint with an Unknown verdict. Zero or invalid policy
// fields take their defaults.
func New(p policy.Health) State { return State{s: fields{Policy: p.WithDefaults()}} }

// SetPolicy replaces the policy, as when an operator changes the config. The
// new thresholds apply from the next result; the verdict is reconsidered at
// the next Report or Tick.
func (s *State) SetPolicy(p policy.Health) { s.s.Policy = p.WithDefaults() }

// Policy returns the policy in force, defaults filled in.
func (s State) Policy() policy.Health { return s.s.Policy }

// Status returns the endpoint's verdict.
func (s State) Status() Status {
	return Status{Verdict: s.s.Verdict, Since: unix(s.s.Since), Reason: s.s.Reason}
}

// Report applies an edge's batch of results at now and reports whether the
// endpoint's verdict changed. A report without an edge id or without checks
// changes nothing.
func (s *State) Report(now time.Time, r Report) bool {
	if r.Edge == "" || len(r.Checks) == 0 {
		return false
	}
	t := s.advance(now)
	edges := s.remembered(t)
	i, found := slices.BinarySearchFunc(edges, r.Edge, func(e edge, id string) int { return strings.Compare(e.ID, id) })
	if !found {
		edges = slices.Insert(edges, i, edge{ID: r.Edge})
	}
	e := &edges[i]
	e.Region, e.Last = r.Region, t
	for _, c := range r.Checks {
		e.record(c, s.s.Policy)
	}
	s.s.Edges = edges
	return s.decide(t)
}

// Tick lets time act: edges that went quiet stop counting (or are
// forgotten), which may change the verdict. It reports whether it did.
func (s *State) Tick(now time.Time) bool {
	t := s.advance(now)
	s.s.Edges = s.remembered(t)
	return s.decide(t)
}

// Deadline returns when an edge whose verdict counts goes stale: the time
// after which the leader should propose a Tick. ok is false when no time
// alone can change the verdict.
func (s State) Deadline() (t time.Time, ok bool) {
	var d int64
	for _, e := range s.s.Edges {
		if e.Verdict != Unknown && s.fresh(e, s.s.Now) && (!ok || e.Last < d) {
			d, ok = e.Last, true
		}
	}
	if !ok {
		return time.Time{}, false
	}
	return unix(d + int64(s.s.Policy.StaleAfter)), true
}

// Observations returns what each remembered edge has seen, by region then
// edge id. The caller owns the slice.
func (s State) Observations() []Observation {
	out := make([]Observation, len(s.s.Edges))
	for i, e := range s.s.Edges {
		out[i] = Observation{
			Edge: e.ID, Region: e.Region, Verdict: e.Verdict, Passes: e.Passes, Failures: e.Failures,
			LastReport: unix(e.Last), Detail: e.Detail, Stale: !s.fresh(e, s.s.Now),
		}
	}
	slices.SortFunc(out, func(a, b Observation) int {
		return cmp.Or(strings.Compare(a.Region, b.Region), strings.Compare(a.Edge, b.Edge))
	})
	return out
}

func (s *State) advance(now time.Time) int64 {
	s.s.Now = max(s.s.Now, now.UnixNano())
	return s.s.Now
}

func (s State) fresh(e edge, t int64) bool { return t-e.Last < int64(s.s.Policy.StaleAfter) }

// remembered returns a new slice of the edges heard from within
// 2*StaleAfter, so that the caller may modify it. It has room for one more,
// and is nil rather than empty so that an encoding round trip gives an
// identical State.
func (s State) remembered(t int64) []edge {
	if len(s.s.Edges) == 0 {
		return nil
	}
	out := make([]edge, 0, len(s.s.Edges)+1)
	for _, e := range s.s.Edges {
		if t-e.Last < 2*int64(s.s.Policy.StaleAfter) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// decide sets the endpoint's verdict to the fresh edges' majority; a tie
// keeps it.
func (s *State) decide(t int64) bool {
	var healthy, unhealthy int
	for _, e := range s.s.Edges {
		if !s.fresh(e, t) {
			continue
		}
		switch e.Verdict {
		case Healthy:
			healthy++
		case Unhealthy:
			unhealthy++
		}
	}
	next := s.s.Verdict
	switch {
	case healthy > unhealthy:
		next = Healthy
	case unhealthy > healthy:
		next = Unhealthy
	}
	if next == s.s.Verdict {
		return false
	}
	s.s.Verdict, s.s.Since = next, t
	s.s.Reason = fmt.Sprintf("%s: %d of %d fresh edges say %s", next, max(healthy, unhealthy), healthy+unhealthy, next)
	return true
}

func (e *edge) record(c Check, p policy.Health) {
	if c.OK {
		e.Failures = 0
		e.Passes = min(e.Passes, ^uint32(0)-1) + 1
		if e.Passes >= p.HealthyThreshold {
			e.Verdict = Healthy
		}
	} else {
		e.Passes = 0
		e.Failures = min(e.Failures, ^uint32(0)-1) + 1
		if e.Failures >= p.UnhealthyThreshold {
			e.Verdict = Unhealthy
		}
	}
	e.Detail = c.Detail
}

// unix converts a stored time; 0 means never.
func unix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
