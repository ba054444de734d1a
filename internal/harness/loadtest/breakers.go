package loadtest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// The observer's name and region on the Watch streams (and in its
// certificate, for a dev cluster).
const (
	observerEdge   = "edgecell-loadtest-observer"
	observerRegion = "loadtest"
)

// breakerLog checks the invariant "no request routed to an endpoint whose
// breaker was open at that revision". It follows the coordinators' Watch
// stream like an edge does, keeping every breaker state change by revision;
// requests carry X-Edge-Debug: 1, so edges answer with the endpoint
// (X-Edge-Endpoint) and the revision of the table they routed on
// (X-Edge-Revision). A routed request whose endpoint was OPEN or HALF_OPEN
// at that revision is a violation: edges skip both (the half-open probe is
// sent outside the proxy). Cells with a panic threshold route to every
// endpoint by design; the dev config has none.
type breakerLog struct {
	watchers []pb.EdgeServiceClient

	mu      sync.Mutex
	rev     uint64
	changes map[string][]breakerAt // endpoint id -> changes by revision
	routed  map[routedAt]struct{}  // distinct (endpoint, revision) seen in responses
	err     error                  // why the stream could not be followed
}

type breakerAt struct {
	rev   uint64
	state pb.BreakerState
}

type routedAt struct {
	endpoint string
	rev      uint64
}

func newBreakerLog(watchers []pb.EdgeServiceClient) *breakerLog {
	return &breakerLog{watchers: watchers, changes: map[string][]breakerAt{}, routed: map[routedAt]struct{}{}}
}

// follow reads the Watch stream until ctx ends, moving to the next
// coordinator when one fails (a killed leader), resuming from the last
// revision seen.
func (l *breakerLog) follow(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		l.mu.Lock()
		from := l.rev
		l.mu.Unlock()
		stream, err := l.watchers[i%len(l.watchers)].Watch(ctx, &pb.WatchRequest{Edge: observerEdge, Region: observerRegion, FromRevision: from})
		if err == nil {
			for {
				msg, rerr := stream.Recv()
				if rerr != nil {
					break
				}
				l.apply(msg)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // pace reconnects to the next coordinator
		}
	}
}

func (l *breakerLog) apply(msg *pb.WatchResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case msg.GetReset_() != nil:
		st := msg.GetReset_()
		for id := range l.changes {
			l.changes[id] = append(l.changes[id], breakerAt{st.GetRevision(), pb.BreakerState_BREAKER_STATE_CLOSED})
		}
		for _, b := range st.GetBreakers() {
			l.changes[b.GetEndpoint()] = append(l.changes[b.GetEndpoint()], breakerAt{st.GetRevision(), b.GetState()})
		}
		l.rev = max(l.rev, st.GetRevision())
	case msg.GetChanges() != nil:
		for _, ch := range msg.GetChanges().GetChanges() {
			for _, ev := range ch.GetEvents() {
				if b := ev.GetPutBreaker(); b != nil {
					l.changes[b.GetEndpoint()] = append(l.changes[b.GetEndpoint()], breakerAt{ch.GetRevision(), b.GetState()})
				}
			}
			l.rev = max(l.rev, ch.GetRevision())
		}
	default:
		l.rev = max(l.rev, msg.GetProgressRevision())
	}
}

// routedOn records where an edge's debug headers say a request went.
func (l *breakerLog) routedOn(endpointTag, revision string) {
	id, _, _ := strings.Cut(endpointTag, "@")
	rev, err := strconv.ParseUint(revision, 10, 64)
	if id == "" || err != nil {
		return
	}
	l.mu.Lock()
	l.routed[routedAt{id, rev}] = struct{}{}
	l.mu.Unlock()
}

// check waits (up to wait) for the log to reach every revision requests
// were routed on, then returns the invariant.
func (l *breakerLog) check(wait time.Duration) Invariant {
	inv := Invariant{Name: InvariantNoRouteOpenBreaker, Checked: true}
	deadline := time.Now().Add(wait)
	for {
		l.mu.Lock()
		var maxRouted uint64
		for r := range l.routed {
			maxRouted = max(maxRouted, r.rev)
		}
		caughtUp := l.rev >= maxRouted
		l.mu.Unlock()
		if caughtUp || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the Watch stream catching up, not a synchronisation
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []string
	unknown := 0
	for r := range l.routed {
		if r.rev > l.rev {
			unknown++
			continue
		}
		if s := stateAt(l.changes[r.endpoint], r.rev); s == pb.BreakerState_BREAKER_STATE_OPEN || s == pb.BreakerState_BREAKER_STATE_HALF_OPEN {
			inv.Violations++
			bad = append(bad, fmt.Sprintf("%s at revision %d (%s)", r.endpoint, r.rev, s))
		}
	}
	slices.Sort(bad)
	inv.Detail = fmt.Sprintf("%d (endpoint, revision) pairs routed, checked against the breaker history up to revision %d", len(l.routed), l.rev)
	if unknown > 0 {
		inv.Detail += fmt.Sprintf("; %d beyond the history, not checked", unknown)
	}
	if len(bad) > 0 {
		inv.Detail += "; routed to: " + strings.Join(bad[:min(len(bad), 5)], ", ")
	}
	return inv
}

// stateAt is the breaker state in force at rev: the last change at or
// before it; closed when there is none.
func stateAt(changes []breakerAt, rev uint64) pb.BreakerState {
	s := pb.BreakerState_BREAKER_STATE_CLOSED
	for _, c := range changes {
		if c.rev > rev {
			break
		}
		s = c.state
	}
	return s
}
