package nonce

import (
	"slices"
	"sync"
	"time"
)

// exploreEvery: one choice in this many goes to the coordinator used least
// recently, so that the answer times of the others stay current.
const exploreEvery = 64

// Bounds of the while a coordinator whose call failed is tried last: it
// doubles with each failure in a row.
const (
	downBase = 100 * time.Millisecond
	downMax  = 10 * time.Second
)

// picker chooses the coordinator for the next nonce RPC; see the package doc.
type picker struct {
	mu    sync.Mutex
	addrs map[string]*addrState
	picks uint64
}

type addrState struct {
	ewma      time.Duration // smoothed answer time; 0: never answered
	lastUsed  time.Time
	failures  int       // in a row
	downUntil time.Time // tried last until then
}

// choose returns the best of addrs not in tried, or "" when none is left.
// Ties go to the earlier address in addrs (the more preferred).
func (p *picker) choose(addrs, tried []string, now time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.picks++
	explore := p.picks%exploreEvery == 0
	var best string
	var bs *addrState
	for _, a := range addrs {
		if slices.Contains(tried, a) {
			continue
		}
		s := p.state(a)
		if bs == nil || s.better(bs, explore, now) {
			best, bs = a, s
		}
	}
	if bs != nil {
		bs.lastUsed = now
	}
	return best
}

// better reports whether s should be chosen over o.
func (s *addrState) better(o *addrState, explore bool, now time.Time) bool {
	sd, od := s.downUntil.After(now), o.downUntil.After(now)
	switch {
	case sd != od:
		return !sd
	case sd:
		return s.downUntil.Before(o.downUntil) // both failed lately: the one to be back first
	case explore:
		return s.lastUsed.Before(o.lastUsed)
	}
	return s.ewma < o.ewma // one never measured (0) is tried, which measures it
}

func (p *picker) state(addr string) *addrState {
	s := p.addrs[addr]
	if s == nil {
		s = &addrState{}
		p.addrs[addr] = s
	}
	return s
}

// answered records an answer from addr after d.
func (p *picker) answered(addr string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.state(addr)
	if s.ewma == 0 {
		s.ewma = d
	} else {
		s.ewma += (d - s.ewma) / 4
	}
	s.ewma = max(s.ewma, time.Nanosecond)
	s.failures, s.downUntil = 0, time.Time{}
}

// failed records a failed call to addr.
func (p *picker) failed(addr string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.state(addr)
	s.failures++
	s.downUntil = now.Add(min(downBase<<min(s.failures-1, 10), downMax))
}
