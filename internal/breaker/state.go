package breaker

import "time"

// State is a breaker's state. The zero value is Closed.
type State uint8

const (
	// Closed: traffic flows; outcomes are counted.
	Closed State = iota
	// Open: the endpoint is ejected until the ejection ends.
	Open
	// HalfOpen: only the edge holding the probe lease may send it a probe.
	HalfOpen
)

// String returns "closed", "open" or "half-open", the words the CLI prints.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "invalid"
}

// Transition is one recorded change of a breaker. From equals To only for an
// operator reset of a closed breaker, which still records its reason, and
// for a trip the ejection cap refused (Closed to Closed; see ObserveCapped).
type Transition struct {
	From, To State
	At       time.Time
	// Reason is for operators, for example "closed: probe by edge-eu-1 succeeded".
	Reason string
}

// Outcomes is one edge's batch of proxy outcomes for one endpoint since its
// previous batch. Connect errors, timeouts and 5xx responses are failures.
type Outcomes struct {
	Successes, ConnectErrors, Timeouts, Status5xx uint32
	// Edge is the reporting edge's id; it only appears in reasons.
	Edge string
	// FailuresFollow says that the same report goes on with failures the
	// edge saw after these outcomes (its next Observe, with no success).
	// Then these successes are old news and do not end the run, and these
	// failures, followed by a success, do not extend it.
	FailuresFollow bool
}

func (o Outcomes) failures() uint64 {
	return uint64(o.ConnectErrors) + uint64(o.Timeouts) + uint64(o.Status5xx)
}

// Status is what operators and edges see of a breaker. Times are zero when
// the event never happened.
type Status struct {
	State State
	// Trips is the number of trips not yet forgotten: the current ejection
	// multiplier.
	Trips uint32
	// OpenedAt is when the breaker last opened; EjectedUntil is when that
	// ejection ends (it is then half-open at the next Tick).
	OpenedAt, EjectedUntil time.Time
	// Ejection is the length of the last ejection.
	Ejection time.Duration
	// ProbeHolder is the edge holding (or, after ProbeUntil, last holding) the
	// probe lease; empty unless half-open.
	ProbeHolder string
	ProbeUntil  time.Time
	// TripRefused says that its cell's ejection cap refused a trip of this
	// breaker, which stayed closed, since the breaker last opened or was
	// reset; opening or a reset clears it.
	TripRefused bool
	// Reason and Since describe the last transition, or the refused trip
	// that set TripRefused; empty and zero for a breaker that never changed.
	Reason string
	Since  time.Time
}

// unix converts a stored time; 0 means never.
func unix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
