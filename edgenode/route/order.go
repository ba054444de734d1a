package route

import (
	"cmp"
	"strings"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// order ranks regions as seen from one edge region: the edge's own region
// first, then regions by one-way latency from it, then regions without a
// latency entry, ties broken by name.
type order struct {
	self string
	dist map[string]uint32
}

// newOrder derives the distances from self out of the latency matrix. A pair
// given once applies both ways; an explicit self->x entry wins over x->self.
func newOrder(self string, lats []*pb.Latency) *order {
	o := &order{self: self, dist: map[string]uint32{}}
	for _, l := range lats {
		if l.GetFrom() == self && l.GetTo() != self {
			o.dist[l.GetTo()] = l.GetOneWayMs()
		}
	}
	for _, l := range lats {
		if l.GetTo() == self && l.GetFrom() != self {
			if _, explicit := o.dist[l.GetFrom()]; !explicit {
				o.dist[l.GetFrom()] = l.GetOneWayMs()
			}
		}
	}
	return o
}

func (o *order) rank(region string) (int, uint32) {
	if region == o.self {
		return 0, 0
	}
	if d, ok := o.dist[region]; ok {
		return 1, d
	}
	return 2, 0
}

func (o *order) compare(a, b string) int {
	ra, da := o.rank(a)
	rb, db := o.rank(b)
	if c := cmp.Compare(ra, rb); c != 0 {
		return c
	}
	if c := cmp.Compare(da, db); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}
