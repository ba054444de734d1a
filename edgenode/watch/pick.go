package watch

import (
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// candidate is a coordinator address and whether it is in the edge's region.
type candidate struct {
	addr  string
	local bool
	// blind: picked while no member (hence no region) was known, from the
	// seeds alone. Such a session moves home as soon as the members arrive.
	blind bool
}

// candidates orders the addresses to try: coordinators in the edge's region
// first, then the others and the seeds. Within each group the order is a
// stable per-edge permutation, so that edges of one region spread over its
// coordinators instead of all picking the first.
func candidates(edge, region string, members []*pb.Member, seeds []string) []candidate {
	seen := map[string]bool{}
	var local, other []candidate
	for _, m := range members {
		a := m.GetGrpcAddr()
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		if m.GetRegion() == region {
			local = append(local, candidate{addr: a, local: true})
		} else {
			other = append(other, candidate{addr: a})
		}
	}
	for _, a := range seeds {
		if a != "" && !seen[a] {
			seen[a] = true
			other = append(other, candidate{addr: a})
		}
	}
	rank := func(c candidate) uint64 {
		h := fnv.New64a()
		h.Write([]byte(edge))
		h.Write([]byte{0})
		h.Write([]byte(c.addr))
		return h.Sum64()
	}
	byRank := func(a, b candidate) int {
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
			out[i].blind = true
		}
	}
	return out
}

// backoff returns the wait before attempt n (n >= 1 after a failure): full
// jitter over an exponential ceiling, so that edges that lost the same
// coordinator do not come back in step.
func backoff(n int, base, ceiling time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}
