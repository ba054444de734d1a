package health

import "slices"

// Node is an edge or an endpoint: an id and the region it lives in.
type Node struct{ ID, Region string }

// Assign returns, for each endpoint id, the ids of the edges that check it,
// sorted and unique: the edges of the endpoint's region, or every edge when
// that region has none. The result depends only on the sets given, not on
// their order. The caller owns the returned slices.
func Assign(edges, endpoints []Node) map[string][]string {
	var all []string
	byRegion := map[string][]string{}
	for _, e := range edges {
		all = append(all, e.ID)
		byRegion[e.Region] = append(byRegion[e.Region], e.ID)
	}
	sortedSet := func(ids []string) []string { slices.Sort(ids); return slices.Compact(ids) }
	all = sortedSet(all)
	for r, ids := range byRegion {
		byRegion[r] = sortedSet(ids)
	}
	out := make(map[string][]string, len(endpoints))
	for _, ep := range endpoints {
		ids, ok := byRegion[ep.Region]
		if !ok {
			ids = all
		}
		out[ep.ID] = slices.Clone(ids)
	}
	return out
}

// ChecksFor returns the ids of the endpoints that edge self checks, sorted
// and unique: what Assign gives self, without building the whole
// assignment. self counts as one of the edges whether or not edges lists it.
func ChecksFor(self Node, edges, endpoints []Node) []string {
	covered := map[string]bool{self.Region: true}
	for _, e := range edges {
		covered[e.Region] = true
	}
	var out []string
	for _, ep := range endpoints {
		if ep.Region == self.Region || !covered[ep.Region] {
			out = append(out, ep.ID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
