package coordconn

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Route names what a call needs from the member that answers it; it sets
// the affinity step of the rule (see the package doc).
type Route uint8

const (
	// Nearest: any member serves the call as well as any other (the watch
	// stream): no affinity.
	Nearest Route = iota
	// Followed: any member answers, relaying writes to the leader (reports,
	// probes, CheckAssignment): the member the watch follows first.
	Followed
	// Leader: only the leader answers, others relay (nonce checks): the
	// leader first, as far as the edge can tell.
	Leader
)

// Candidate is a coordinator a call may go to.
type Candidate struct {
	Addr string
	// Local: a member in the edge's region.
	Local bool
	// Blind: chosen while the table listed no member (so no region was
	// known), from the seeds alone.
	Blind bool
}

// exploreEvery: one Leader pick in this many goes to the member used least
// recently for Leader calls, so that the answer times of the others stay
// current.
const exploreEvery = 64

// Bounds of the penalty after a failure: it doubles with each failure in a
// row.
const (
	penaltyBase = 100 * time.Millisecond
	penaltyMax  = 10 * time.Second
)

// member is what the pool learnt about one address.
type member struct {
	failures  int       // in a row
	downUntil time.Time // last for every route until then
	// notLeaders counts NOT_LEADER answers in a row; the member is last
	// for Leader and Followed calls until notLeaderUntil.
	notLeaders     int
	notLeaderUntil time.Time
	ewma           time.Duration // smoothed Leader answer time; 0: never measured
	lastUsed       time.Time     // last Leader pick
}

func penalty(n int) time.Duration { return min(penaltyBase<<min(n-1, 10), penaltyMax) }

// until is when the member's penalty for route r ends.
func (m *member) until(r Route) time.Time {
	if r != Nearest && m.notLeaderUntil.After(m.downUntil) {
		return m.notLeaderUntil
	}
	return m.downUntil
}

// Pick returns the coordinator a call of route r should go to, by the rule
// of the package doc, skipping the addresses in tried; false when every
// known one is in tried (or none is known).
func (p *Pool) Pick(r Route, tried []string) (Candidate, bool) {
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	cands := p.candidates()
	explore := false
	if r == Leader {
		p.picks++
		explore = p.picks%exploreEvery == 0
	}
	best := -1
	for i, c := range cands {
		if slices.Contains(tried, c.Addr) {
			continue
		}
		if best < 0 || p.better(r, c.Addr, cands[best].Addr, explore, now) {
			best = i
		}
	}
	if best < 0 {
		return Candidate{}, false
	}
	if r == Leader {
		p.get(cands[best].Addr).lastUsed = now
	}
	return cands[best], true
}

// better reports whether a call of route r should go to a rather than b,
// where b comes first in preference order.
func (p *Pool) better(r Route, a, b string, explore bool, now time.Time) bool {
	sa, sb := p.get(a), p.get(b)
	ua, ub := sa.until(r), sb.until(r)
	switch da, db := ua.After(now), ub.After(now); {
	case da != db:
		return !da
	case da:
		return ua.Before(ub) // both penalised: the one due back first
	}
	var affine string
	switch r {
	case Followed:
		affine = p.followed
	case Leader:
		affine = p.leader
	}
	if affine != "" && (a == affine) != (b == affine) {
		return a == affine
	}
	if r != Leader {
		return false
	}
	if explore {
		return sa.lastUsed.Before(sb.lastUsed)
	}
	return sa.ewma < sb.ewma // one never measured (0) is tried, which measures it
}

// Answered records that a call of route r to addr was answered after took:
// the member's penalties end, and a Leader answer time is measured.
func (p *Pool) Answered(addr string, r Route, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.get(addr)
	m.failures, m.downUntil = 0, time.Time{}
	if r == Nearest {
		return
	}
	m.notLeaders, m.notLeaderUntil = 0, time.Time{}
	if r == Leader {
		if m.ewma == 0 {
			m.ewma = took
		} else {
			m.ewma += (took - m.ewma) / 4
		}
		m.ewma = max(m.ewma, time.Nanosecond)
	}
}

// Failed records that a call to addr failed with err. A NOT_LEADER answer
// puts the member last for Leader and Followed calls and, when it names
// the leader, sends Leader calls there; a failure that says the member is
// unwell puts it last for every call; any other error (a refusal of the
// request itself, the caller's cancellation) changes nothing. Either
// penalty grows with each failure in a row; see the package doc.
func (p *Pool) Failed(addr string, err error) {
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.get(addr)
	if hint, ok := NotLeader(err); ok {
		m.notLeaders++
		m.notLeaderUntil = now.Add(penalty(m.notLeaders))
		if p.leader == addr {
			p.leader = ""
		}
		if a := p.resolve(hint); a != "" && a != addr {
			// Believed the leader now: whatever it answered before.
			p.leader = a
			l := p.get(a)
			l.notLeaders, l.notLeaderUntil = 0, time.Time{}
		}
		return
	}
	if !unwell(err) {
		return
	}
	m.failures++
	m.downUntil = now.Add(penalty(m.failures))
	if p.leader == addr {
		p.leader = ""
	}
}

// unwell reports whether err says the member could not serve the call (so
// another one may), rather than refusing the request itself.
func unwell(err error) bool {
	if err == nil || errors.Is(err, ErrClosed) {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.DataLoss:
		return true
	case codes.Unknown:
		// Not a status: a local failure (a stream that went silent, a
		// coordinator of another cluster), unless it is the caller's own.
		return !errors.Is(err, context.Canceled)
	}
	return false
}

// Leader is the leader's address as the last NOT_LEADER named it, or "".
func (p *Pool) Leader() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leader
}

// resolve turns a leader hint (a member name, or a gRPC address) into a
// known candidate's address, or "".
func (p *Pool) resolve(hint string) string {
	if hint == "" {
		return ""
	}
	if p.cfg.Members != nil {
		for _, m := range p.cfg.Members() {
			if m.GetName() == hint && m.GetGrpcAddr() != "" {
				return m.GetGrpcAddr()
			}
		}
	}
	for _, c := range p.candidates() {
		if c.Addr == hint {
			return hint
		}
	}
	return ""
}

func (p *Pool) get(addr string) *member {
	m := p.state[addr]
	if m == nil {
		m = &member{}
		p.state[addr] = m
	}
	return m
}

// Candidates returns the known coordinators in preference order (step 4
// of the rule), each once.
func (p *Pool) Candidates() []Candidate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.candidates())
}

// ordered caches the preference order for one members slice.
type ordered struct {
	members []*pb.Member
	cands   []Candidate
	valid   bool
}

// candidates returns the preference order, recomputed when the members
// changed (connections to members no longer listed are closed); p.mu is
// held. The result must not be modified.
func (p *Pool) candidates() []Candidate {
	if p.cfg.Addrs != nil {
		var out []Candidate
		for _, a := range p.cfg.Addrs() {
			if a != "" && !slices.ContainsFunc(out, func(c Candidate) bool { return c.Addr == a }) {
				out = append(out, Candidate{Addr: a})
			}
		}
		return out
	}
	var ms []*pb.Member
	if p.cfg.Members != nil {
		ms = p.cfg.Members()
	}
	if p.order.valid && sameSlice(ms, p.order.members) {
		return p.order.cands
	}
	cands := order(p.cfg.Edge, p.cfg.Region, ms, p.cfg.Seeds)
	if p.order.valid {
		for _, old := range p.order.cands {
			if old.Addr != p.followed && !slices.ContainsFunc(cands, func(c Candidate) bool { return c.Addr == old.Addr }) {
				p.forget(old.Addr)
			}
		}
	}
	p.order = ordered{members: ms, cands: cands, valid: true}
	return cands
}

func sameSlice(a, b []*pb.Member) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// order is step 4 of the rule: members of region first, then the other
// members and the seeds not among them, each group in a stable per-edge
// permutation.
func order(edge, region string, members []*pb.Member, seeds []string) []Candidate {
	seen := map[string]bool{}
	var local, other []Candidate
	for _, m := range members {
		a := m.GetGrpcAddr()
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		if m.GetRegion() == region {
			local = append(local, Candidate{Addr: a, Local: true})
		} else {
			other = append(other, Candidate{Addr: a})
		}
	}
	for _, a := range seeds {
		if a != "" && !seen[a] {
			seen[a] = true
			other = append(other, Candidate{Addr: a})
		}
	}
	rank := func(c Candidate) uint64 {
		h := fnv.New64a()
		h.Write([]byte(edge))
		h.Write([]byte{0})
		h.Write([]byte(c.Addr))
		return h.Sum64()
	}
	byRank := func(a, b Candidate) int {
		ra, rb := rank(a), rank(b)
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return 0
	}
	slices.SortFunc(local, byRank)
	slices.SortFunc(other, byRank)
	out := append(local, other...)
	if len(members) == 0 {
		for i := range out {
			out[i].Blind = true
		}
	}
	return out
}
