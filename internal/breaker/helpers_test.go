package breaker

import (
	"slices"
	"time"
)

// t0 is the fake clock's origin, on a whole second so that window buckets
// start at offsets 0s, 1s, 2s, ...
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// op applies one input to b at now and returns the input's boolean result:
// whether the state changed, or for grant whether the lease was granted.
type op func(b *Breaker, now time.Time) bool

type step struct {
	at   time.Duration // since t0
	op   op
	want bool
}

func observe(o Outcomes) op {
	return func(b *Breaker, now time.Time) bool { _, ok := b.Observe(now, o); return ok }
}

func tick() op {
	return func(b *Breaker, now time.Time) bool { _, ok := b.Tick(now); return ok }
}

func grant(edge string) op {
	return func(b *Breaker, now time.Time) bool { return b.GrantProbe(now, edge) }
}

func probe(edge string, ok bool) op {
	return func(b *Breaker, now time.Time) bool { _, changed := b.ProbeResult(now, edge, ok); return changed }
}

func reset() op {
	return func(b *Breaker, now time.Time) bool { _, ok := b.Reset(now); return ok }
}

func connects(n uint32, edge string) Outcomes { return Outcomes{ConnectErrors: n, Edge: edge} }

func seq(parts ...[]step) []step { return slices.Concat(parts...) }

// Common prefixes, with the default policy.
var (
	// tripAt0 opens the breaker at 0s with an ejection until 5s.
	tripAt0 = []step{{0, observe(connects(5, "edge-a")), true}}
	// halfOpenAt5 is half-open from 5s.
	halfOpenAt5 = seq(tripAt0, []step{{5 * time.Second, tick(), true}})
	// probingA is half-open with edge-a holding the lease from 5s to 7s.
	probingA = seq(halfOpenAt5, []step{{5 * time.Second, grant("edge-a"), true}})
	// closedAt5500 closed again at 5.5s with one trip remembered.
	closedAt5500 = seq(probingA, []step{{5500 * time.Millisecond, probe("edge-a", true), true}})
)
