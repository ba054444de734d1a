//go:build fault

package fault

import (
	"sync"
	"time"
)

// Outcome is what a client knows about an operation once its call returned.
type Outcome int

const (
	// OK: the operation took effect (a write was acknowledged, a read or an
	// HTTP request got an answer).
	OK Outcome = iota
	// Failed: the operation certainly had no effect (refused, or never sent:
	// the connection was refused).
	Failed
	// Unknown: no answer (a timeout, a connection lost after sending); a
	// write may or may not have committed.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// Kind is the workload an operation belongs to.
type Kind int

const (
	// KindPlain is an unauthenticated request through an edge.
	KindPlain Kind = iota
	// KindSigned is an HMAC-signed request with a fresh nonce (sent to two
	// edges at once: two operations with the same nonce).
	KindSigned
	// KindReplay is a signed request sent again, byte for byte.
	KindReplay
	// KindWrite is AdminService.PutPlacement.
	KindWrite
	// KindRead is AdminService.GetPlacement, linearizable.
	KindRead
)

func (k Kind) String() string {
	return [...]string{"plain", "signed", "replay", "write", "read"}[k]
}

// Op is one operation a client made, as the client saw it. Times are
// offsets from the start of the run.
type Op struct {
	Kind         Kind
	Client       int
	Call, Return time.Duration
	Outcome      Outcome
	Err          string

	// HTTP requests (plain, signed, replay).
	Edge   string // the edge's region
	Status int    // the HTTP status when Outcome is OK
	KeyID  string // signed and replay
	Nonce  string

	// Placement writes and reads: Value is the cell written, or the cell read.
	Member string
	Key    string
	Value  string
	// Final marks the reads made after every fault healed and every
	// workload stopped (the "readable at the end" check).
	Final bool
}

// Hit is one signed request that reached the backend.
type Hit struct {
	KeyID, Nonce string
	Endpoint     string // the endpoint (listener) it reached
	At           time.Duration
}

// Interval is [Start, End] in offsets from the start of the run.
type Interval struct{ Start, End time.Duration }

func (iv Interval) contains(a, b time.Duration) bool { return iv.Start <= a && b <= iv.End }

// FaultEvent is one failpoint the nemesis ran, from injection to recovery.
type FaultEvent struct {
	Name   string
	Target string
	Interval
	Err string
}

// ProcReport is one process (a coordinator or an edge) at the end of a run.
type ProcReport struct {
	Name string
	// Running: the process was running when the run ended.
	Running bool
	// Exits are the exits the harness did not cause (not a SIGKILL it sent):
	// "exit status 1", "signal: segmentation fault", ...
	Exits []string
	// Log is the process's whole log, every incarnation.
	Log string
}

// History is everything a run recorded; the checkers read only this.
type History struct {
	Ops    []Op
	Hits   []Hit
	Faults []FaultEvent
	// Live holds, per edge region, the intervals in which the edge was up
	// and ready (from its /readyz answering after a start to the moment the
	// nemesis stopped or killed it).
	Live map[string][]Interval
	// Initial is the value every placement key holds before the first write.
	Initial string
	Procs   []ProcReport
}

// recorder collects a history from concurrent workloads.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
	hits  []Hit
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

// now is the offset of this instant from the start of the run.
func (r *recorder) now() time.Duration { return time.Since(r.start) }

func (r *recorder) add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) hit(h Hit) {
	r.mu.Lock()
	r.hits = append(r.hits, h)
	r.mu.Unlock()
}

func (r *recorder) snapshot() ([]Op, []Hit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...), append([]Hit(nil), r.hits...)
}
