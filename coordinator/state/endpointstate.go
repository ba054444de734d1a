package state

import (
	"fmt"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/breaker"
	"github.com/edgecell/edgecell/internal/health"
)

// endpointState is one endpoint's breaker and health aggregation. It is
// stored by value: both packages' values are copy-safe (a Breaker has no
// pointers; a health.State never writes into a slice a copy may share), so
// an update stores a modified copy and published versions stay untouched.
// An endpoint gets one on its first report and loses it when it leaves the
// config.
type endpointState struct {
	hasBreaker bool
	breaker    breaker.Breaker
	// breakerRev is the revision of the last change of breaker.Status(); 0
	// while it never changed.
	breakerRev uint64
	hasHealth  bool
	health     health.State
	healthRev  uint64
}

// deadline is the earliest time a Tick would change the state.
func (e endpointState) deadline() (time.Time, bool) {
	var out time.Time
	ok := false
	consider := func(t time.Time, has bool) {
		if has && (!ok || t.Before(out)) {
			out, ok = t, true
		}
	}
	if e.hasBreaker {
		consider(e.breaker.Deadline())
	}
	if e.hasHealth {
		consider(e.health.Deadline())
	}
	return out, ok
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

var breakerStates = map[breaker.State]pb.BreakerState{
	breaker.Closed: pb.BreakerState_BREAKER_STATE_CLOSED, breaker.Open: pb.BreakerState_BREAKER_STATE_OPEN,
	breaker.HalfOpen: pb.BreakerState_BREAKER_STATE_HALF_OPEN,
}

var verdicts = map[health.Verdict]pb.HealthVerdict{
	health.Unknown: pb.HealthVerdict_HEALTH_VERDICT_UNSPECIFIED, health.Healthy: pb.HealthVerdict_HEALTH_VERDICT_HEALTHY,
	health.Unhealthy: pb.HealthVerdict_HEALTH_VERDICT_UNHEALTHY,
}

func breakerStatus(endpoint string, b breaker.Breaker, rev uint64) *pb.BreakerStatus {
	st := b.Status()
	return &pb.BreakerStatus{
		Endpoint: endpoint, State: breakerStates[st.State], ProbeHolder: st.ProbeHolder,
		ProbeUntilUnixMs: unixMs(st.ProbeUntil), EjectedUntilUnixMs: unixMs(st.EjectedUntil), Trips: st.Trips,
		Reason: st.Reason, SinceUnixMs: unixMs(st.Since), ModRevision: rev,
	}
}

func healthStatus(endpoint string, h health.State, rev uint64) *pb.HealthStatus {
	st := h.Status()
	return &pb.HealthStatus{
		Endpoint: endpoint, Verdict: verdicts[st.Verdict], SinceUnixMs: unixMs(st.Since), Reason: st.Reason, ModRevision: rev,
	}
}

func observations(h health.State) []*pb.HealthObservation {
	obs := h.Observations()
	out := make([]*pb.HealthObservation, len(obs))
	for i, o := range obs {
		out[i] = &pb.HealthObservation{
			Edge: o.Edge, Region: o.Region, Verdict: verdicts[o.Verdict], Passes: o.Passes, Failures: o.Failures,
			LastReportUnixMs: unixMs(o.LastReport), Detail: o.Detail, Stale: o.Stale,
		}
	}
	return out
}

// Breakers returns the breaker of every endpoint in the config, by endpoint
// id: an endpoint whose breaker never changed is listed closed with
// mod_revision 0.
func (v View) Breakers() []*pb.BreakerStatus {
	out := make([]*pb.BreakerStatus, 0, v.t.endpoints.Len())
	v.t.endpoints.Scan(func(id, _ string) bool {
		e, _ := v.t.epStates.Get(id)
		if e.hasBreaker {
			out = append(out, breakerStatus(id, e.breaker, e.breakerRev))
		} else {
			out = append(out, &pb.BreakerStatus{Endpoint: id, State: pb.BreakerState_BREAKER_STATE_CLOSED})
		}
		return true
	})
	return out
}

// Health returns every endpoint's verdict with each reporting edge's
// observation, by endpoint id.
func (v View) Health() []*pb.EndpointHealthReport {
	out := make([]*pb.EndpointHealthReport, 0, v.t.endpoints.Len())
	v.t.endpoints.Scan(func(id, _ string) bool {
		e, _ := v.t.epStates.Get(id)
		r := &pb.EndpointHealthReport{Status: &pb.HealthStatus{Endpoint: id}}
		if e.hasHealth {
			r.Status, r.Observations = healthStatus(id, e.health, e.healthRev), observations(e.health)
		}
		out = append(out, r)
		return true
	})
	return out
}

// NextDeadline returns the earliest time at which a TickOp would change some
// breaker or health state, reap a nonce or forget an edge's report batches:
// the leader proposes one once it has passed. ok is false when only new
// reports can change anything. It costs O(endpoints with state).
func (v View) NextDeadline() (t time.Time, ok bool) {
	t, ok = v.nonceDeadline()
	if d, has := v.reportDeadline(); has && (!ok || d.Before(t)) {
		t, ok = d, true
	}
	v.t.epStates.Scan(func(_ string, e endpointState) bool {
		if d, has := e.deadline(); has && (!ok || d.Before(t)) {
			t, ok = d, true
		}
		return true
	})
	return t, ok
}

// statuses lists the breakers and verdicts that ever changed, by endpoint,
// for a watch reset.
func (v *version) statuses() (bs []*pb.BreakerStatus, hs []*pb.HealthStatus) {
	v.t.epStates.Scan(func(id string, e endpointState) bool {
		if e.breakerRev > 0 {
			bs = append(bs, breakerStatus(id, e.breaker, e.breakerRev))
		}
		if e.healthRev > 0 {
			hs = append(hs, healthStatus(id, e.health, e.healthRev))
		}
		return true
	})
	return bs, hs
}

// endpointStates encodes every endpoint's state for a raft snapshot.
func (v *version) endpointStates() ([]*pb.EndpointHealthState, error) {
	var out []*pb.EndpointHealthState
	var err error
	v.t.epStates.Scan(func(id string, e endpointState) bool {
		st := &pb.EndpointHealthState{Endpoint: id, BreakerModRevision: e.breakerRev, HealthModRevision: e.healthRev}
		if e.hasBreaker {
			if st.Breaker, err = e.breaker.MarshalBinary(); err != nil {
				return false
			}
		}
		if e.hasHealth {
			if st.Health, err = e.health.MarshalBinary(); err != nil {
				return false
			}
		}
		out = append(out, st)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("state: encode endpoint state: %w", err)
	}
	return out, nil
}

// restoreEndpointStates decodes a snapshot's endpoint states into t. Each
// must name an endpoint of the config, once, with revisions at or below rev.
func (t tables) restoreEndpointStates(list []*pb.EndpointHealthState, rev uint64) error {
	for i, st := range list {
		path := fmt.Sprintf("endpoint_states[%d]", i)
		id := st.GetEndpoint()
		if _, ok := t.endpoints.Get(id); !ok {
			return fmt.Errorf("%w: %s.endpoint: %q is not an endpoint of the config", ErrInvalidSnapshot, path, id)
		}
		if _, dup := t.epStates.Get(id); dup {
			return fmt.Errorf("%w: %s.endpoint: duplicate endpoint %q", ErrInvalidSnapshot, path, id)
		}
		if st.GetBreakerModRevision() > rev || st.GetHealthModRevision() > rev {
			return fmt.Errorf("%w: %s: mod revisions %d and %d do not fit revision %d", ErrInvalidSnapshot, path, st.GetBreakerModRevision(), st.GetHealthModRevision(), rev)
		}
		e := endpointState{breakerRev: st.GetBreakerModRevision(), healthRev: st.GetHealthModRevision()}
		if data := st.GetBreaker(); len(data) > 0 {
			if err := e.breaker.UnmarshalBinary(data); err != nil {
				return fmt.Errorf("%w: %s.breaker: %w", ErrInvalidSnapshot, path, err)
			}
			e.hasBreaker = true
		}
		if data := st.GetHealth(); len(data) > 0 {
			if err := e.health.UnmarshalBinary(data); err != nil {
				return fmt.Errorf("%w: %s.health: %w", ErrInvalidSnapshot, path, err)
			}
			e.hasHealth = true
		}
		t.epStates.Set(id, e)
	}
	return nil
}
