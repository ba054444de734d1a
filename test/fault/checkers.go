//go:build fault

package fault

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Violation is one broken rule, with what shows it.
type Violation struct {
	Rule   string
	Detail string
}

func (v Violation) String() string { return v.Rule + ": " + v.Detail }

// Rule names, as reports print them.
const (
	RuleLinearizable    = "linearizable"
	RuleNonceBackend    = "nonce-once-at-backend"
	RuleNonce2xx        = "nonce-one-2xx"
	RuleFinalRead       = "acknowledged-write-readable"
	RuleProcess         = "process-running"
	RuleStaticStability = "static-stability"
)

// regInput is a placement operation as porcupine sees it.
type regInput struct {
	write bool
	key   string
	value string // the cell written
}

// registerModel is one placement key as a register of cell ids, partitioned
// by key. Reads carry the value read as their output.
func registerModel(initial string) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(regInput).key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			sort.Strings(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return initial },
		Step: func(state, input, output any) (bool, any) {
			in := input.(regInput)
			if in.write {
				return true, in.value
			}
			return output.(string) == state.(string), state
		},
		Equal: func(a, b any) bool { return a.(string) == b.(string) },
		DescribeOperation: func(input, output any) string {
			in := input.(regInput)
			if in.write {
				return fmt.Sprintf("put(%s, %s)", in.key, in.value)
			}
			return fmt.Sprintf("get(%s) -> %s", in.key, output)
		},
	}
}

// porcupineOps turns the placement operations of a history into porcupine's:
// acknowledged writes and successful reads as they happened, writes of
// unknown outcome with an infinite return time (they may take effect at any
// later moment, or never), failed writes and unanswered reads left out
// (they had no effect and observed nothing).
func porcupineOps(ops []Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		var in regInput
		switch op.Kind {
		case KindWrite:
			in = regInput{write: true, key: op.Key, value: op.Value}
		case KindRead:
			in = regInput{key: op.Key}
		default:
			continue
		}
		ret := int64(op.Return)
		switch {
		case op.Outcome == Failed, op.Kind == KindRead && op.Outcome != OK:
			continue
		case op.Outcome == Unknown:
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: in, Call: int64(op.Call), Output: op.Value, Return: ret})
	}
	return out
}

// LinResult is the linearizability checker's verdict: porcupine.Ok,
// porcupine.Illegal, or porcupine.Unknown when it ran out of time (which is
// not a pass).
type LinResult struct {
	Result porcupine.CheckResult
	Ops    int
	// Info lets a caller render porcupine's visualization of an illegal
	// history.
	Info  porcupine.LinearizationInfo
	Model porcupine.Model
}

// CheckLinearizable checks the placement writes and reads of h, per key, as
// a linearizable register starting at h.Initial, giving porcupine at most
// timeout.
func CheckLinearizable(h *History, timeout time.Duration) LinResult {
	model := registerModel(h.Initial)
	ops := porcupineOps(h.Ops)
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	return LinResult{Result: res, Ops: len(ops), Info: info, Model: model}
}

// CheckNonces checks that no (key, nonce) reached the backend twice and that
// no (key, nonce) got two 2xx answers at clients.
func CheckNonces(h *History) []Violation {
	var vs []Violation
	type kn struct{ key, nonce string }
	hits := map[kn][]Hit{}
	for _, hit := range h.Hits {
		k := kn{hit.KeyID, hit.Nonce}
		hits[k] = append(hits[k], hit)
	}
	for k, hs := range hits {
		if len(hs) > 1 {
			at := joinf(hs, ", ", func(hit Hit) string { return fmt.Sprintf("%s at %s", hit.Endpoint, hit.At.Round(time.Millisecond)) })
			vs = append(vs, Violation{RuleNonceBackend, fmt.Sprintf("key %s nonce %s reached the backend %d times: %s", k.key, k.nonce, len(hs), at)})
		}
	}
	oks := map[kn][]Op{}
	for _, op := range h.Ops {
		if (op.Kind == KindSigned || op.Kind == KindReplay) && op.Outcome == OK && op.Status/100 == 2 {
			k := kn{op.KeyID, op.Nonce}
			oks[k] = append(oks[k], op)
		}
	}
	for k, os := range oks {
		if len(os) > 1 {
			at := joinf(os, "; ", func(op Op) string {
				return fmt.Sprintf("%s %d via %s [%s, %s]", op.Kind, op.Status, op.Edge, op.Call.Round(time.Millisecond), op.Return.Round(time.Millisecond))
			})
			vs = append(vs, Violation{RuleNonce2xx, fmt.Sprintf("key %s nonce %s got %d 2xx answers: %s", k.key, k.nonce, len(os), at)})
		}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Detail < vs[j].Detail })
	return vs
}

// CheckFinalReads checks, per placement key written, that the final read
// (an Op with Final set) returned the value of the last acknowledged write
// or of a write that may have come after it: a write, acknowledged or of
// unknown outcome, that no acknowledged write followed (called after it
// returned). The initial value qualifies only when no write was
// acknowledged. A key without a successful final read is a violation too.
func CheckFinalReads(h *History) []Violation {
	writes := map[string][]Op{}
	final := map[string]*Op{}
	var keys []string
	for i, op := range h.Ops {
		switch {
		case op.Kind == KindWrite:
			if _, ok := writes[op.Key]; !ok {
				keys = append(keys, op.Key)
			}
			writes[op.Key] = append(writes[op.Key], op)
		case op.Kind == KindRead && op.Final && op.Outcome == OK:
			final[op.Key] = &h.Ops[i]
		}
	}
	sort.Strings(keys)
	var vs []Violation
	for _, key := range keys {
		ws := writes[key]
		var lastAcked *Op
		for i := range ws {
			if ws[i].Outcome == OK && (lastAcked == nil || ws[i].Call > lastAcked.Call) {
				lastAcked = &ws[i]
			}
		}
		allowed := map[string]bool{}
		if lastAcked == nil {
			allowed[h.Initial] = true
		}
		for _, w := range ws {
			if w.Outcome == Failed {
				continue
			}
			followed := false
			if w.Outcome == OK {
				for _, a := range ws {
					if a.Outcome == OK && a.Call > w.Return {
						followed = true
						break
					}
				}
			} // a write of unknown outcome may land at any time: never followed
			if !followed {
				allowed[w.Value] = true
			}
		}
		fr := final[key]
		if fr == nil {
			vs = append(vs, Violation{RuleFinalRead, fmt.Sprintf("key %s: no final linearizable read succeeded", key)})
			continue
		}
		if !allowed[fr.Value] {
			var want []string
			for v := range allowed {
				want = append(want, v)
			}
			sort.Strings(want)
			last := "none"
			if lastAcked != nil {
				last = fmt.Sprintf("%s [%s, %s] via %s", lastAcked.Value, lastAcked.Call.Round(time.Millisecond), lastAcked.Return.Round(time.Millisecond), lastAcked.Member)
			}
			vs = append(vs, Violation{RuleFinalRead, fmt.Sprintf("key %s: final read got %q, want one of %v (last acknowledged write: %s)", key, fr.Value, want, last)})
		}
	}
	return vs
}

// joinf formats each of xs with f and joins them with sep.
func joinf[T any](xs []T, sep string, f func(T) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = f(x)
	}
	return strings.Join(parts, sep)
}

// panicMarkers are what a Go process prints when it dies of a panic or a
// runtime fatal error.
var panicMarkers = []string{"panic:", "fatal error:"}

// CheckProcesses checks that every process is running at the end, none
// exited without the harness killing it, and no log shows a panic; each
// violation carries the tail of the process's log.
func CheckProcesses(procs []ProcReport) []Violation {
	var vs []Violation
	for _, p := range procs {
		var why []string
		if !p.Running {
			why = append(why, "not running at the end")
		}
		for _, e := range p.Exits {
			why = append(why, "exited by itself ("+e+")")
		}
		for _, m := range panicMarkers {
			if strings.Contains(p.Log, m) {
				why = append(why, "its log contains "+m)
			}
		}
		if len(why) > 0 {
			vs = append(vs, Violation{RuleProcess, fmt.Sprintf("%s: %s; log tail:\n%s", p.Name, strings.Join(why, ", "), tail(p.Log, 40))})
		}
	}
	return vs
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// liveThrough reports whether the edge was up and ready for the whole of
// [call, ret].
func liveThrough(h *History, edge string, call, ret time.Duration) bool {
	for _, iv := range h.Live[edge] {
		if iv.contains(call, ret) {
			return true
		}
	}
	return false
}

// CheckStaticStability checks that every plain request to an edge that was
// up and ready for the whole request got a 2xx, whatever the coordinators
// were doing.
func CheckStaticStability(h *History) []Violation {
	var bad []string
	n := 0
	for _, op := range h.Ops {
		if op.Kind != KindPlain || !liveThrough(h, op.Edge, op.Call, op.Return) {
			continue
		}
		if op.Outcome != OK || op.Status/100 != 2 {
			n++
			if len(bad) < 10 {
				bad = append(bad, fmt.Sprintf("%s [%s, %s] %s %d %s", op.Edge, op.Call.Round(time.Millisecond), op.Return.Round(time.Millisecond), op.Outcome, op.Status, op.Err))
			}
		}
	}
	if n == 0 {
		return nil
	}
	return []Violation{{RuleStaticStability, fmt.Sprintf("%d plain requests to live edges did not get a 2xx; first ones: %s", n, strings.Join(bad, "; "))}}
}

// Phase is a part of a run: during a fault (injection to recovery) or quiet.
type Phase int

const (
	// PhaseFault: the operation was called while a fault was in place.
	PhaseFault Phase = iota
	// PhaseQuiet: no fault was in place when it was called.
	PhaseQuiet
)

// Counts is how many operations were made and how many succeeded.
type Counts struct{ OK, Total int }

// Percent is OK/Total in percent, 100 when there was nothing.
func (c Counts) Percent() float64 {
	if c.Total == 0 {
		return 100
	}
	return 100 * float64(c.OK) / float64(c.Total)
}

func (c Counts) String() string { return fmt.Sprintf("%.1f%% (%d/%d)", c.Percent(), c.OK, c.Total) }

// Availability is, per workload and phase, the share of operations that
// succeeded: plain requests to live edges (2xx), fresh nonces (one of the
// two requests got a 2xx), placement writes (acknowledged) and linearizable
// reads (answered).
type Availability map[Kind][2]Counts

// ComputeAvailability reads the availability figures off h.
func ComputeAvailability(h *History) Availability {
	phase := func(at time.Duration) Phase {
		for _, f := range h.Faults {
			if f.Start <= at && at <= f.End {
				return PhaseFault
			}
		}
		return PhaseQuiet
	}
	a := Availability{}
	count := func(k Kind, p Phase, ok bool) {
		c := a[k]
		c[p].Total++
		if ok {
			c[p].OK++
		}
		a[k] = c
	}
	type signed struct {
		call time.Duration
		ok   bool
	}
	nonces := map[string]*signed{}
	var order []string
	for _, op := range h.Ops {
		switch op.Kind {
		case KindPlain:
			if liveThrough(h, op.Edge, op.Call, op.Return) {
				count(KindPlain, phase(op.Call), op.Outcome == OK && op.Status/100 == 2)
			}
		case KindSigned:
			k := op.KeyID + "/" + op.Nonce
			s := nonces[k]
			if s == nil {
				s = &signed{call: op.Call}
				nonces[k] = s
				order = append(order, k)
			}
			s.call = min(s.call, op.Call)
			s.ok = s.ok || op.Outcome == OK && op.Status/100 == 2
		case KindWrite, KindRead:
			if !op.Final {
				count(op.Kind, phase(op.Call), op.Outcome == OK)
			}
		}
	}
	for _, k := range order {
		count(KindSigned, phase(nonces[k].call), nonces[k].ok)
	}
	return a
}

// String is one line: each workload's fault and quiet figures.
func (a Availability) String() string {
	var parts []string
	for _, k := range []Kind{KindPlain, KindSigned, KindWrite, KindRead} {
		c := a[k]
		parts = append(parts, fmt.Sprintf("%s fault %s quiet %s", k, c[PhaseFault], c[PhaseQuiet]))
	}
	return strings.Join(parts, ", ")
}
