package route

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/policy"
)

// Endpoint is one upstream of a cell, with its URL taken apart once so the
// proxy never parses it per request. Immutable; shared between tables.
type Endpoint struct {
	// ID is the endpoint id, unique across cells.
	ID string
	// Region is the endpoint's region.
	Region string
	// Tag is "ID@Region", the value of the X-Edge-Endpoint response header.
	Tag string
	// URL is the endpoint URL as configured.
	URL string
	// TLS is true for https endpoints.
	TLS bool
	// Addr is host:port to dial, the default port filled in.
	Addr string
	// PoolKey identifies connections that can be shared: scheme and Addr.
	PoolKey string
	// Host is the Host header to send upstream (the URL's host as written).
	Host string
	// ServerName is the host name for TLS verification.
	ServerName string
	// UpstreamTLS, for an https endpoint of a cell with upstream_tls, is
	// the client TLS configuration to verify it with (the cell's CA, its
	// server name); nil: the edge's default.
	UpstreamTLS *tls.Config
	poolTag     string // the cell's policy.Upstream.PoolTag, in PoolKey
	// PathPrefix is the URL's escaped path without trailing slashes; the
	// request path is appended to it. Empty when the URL has no path.
	PathPrefix string
	// Weight is the relative weight within the region, 0 already mapped to 1.
	Weight uint32
	// Gate is the endpoint's breaker, health and outcome state. The pointer
	// never changes; the Gate is mutable and shared by every table of the
	// lineage while the endpoint stays in the config.
	Gate *Gate
}

func newEndpoint(pe *pb.Endpoint) (*Endpoint, error) {
	if pe.GetId() == "" {
		return nil, fmt.Errorf("%w: endpoint with url %q has no id", ErrInvalidEndpoint, pe.GetUrl())
	}
	u, err := url.Parse(pe.GetUrl())
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: url %q: %v", ErrInvalidEndpoint, pe.GetId(), pe.GetUrl(), err)
	}
	port := "80"
	switch u.Scheme {
	case "http":
	case "https":
		port = "443"
	default:
		return nil, fmt.Errorf("%w: endpoint %q: url %q: scheme must be http or https", ErrInvalidEndpoint, pe.GetId(), pe.GetUrl())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%w: endpoint %q: url %q has no host", ErrInvalidEndpoint, pe.GetId(), pe.GetUrl())
	}
	if p := u.Port(); p != "" {
		port = p
	}
	w := pe.GetWeight()
	if w == 0 {
		w = 1
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	return &Endpoint{
		ID:         pe.GetId(),
		Region:     pe.GetRegion(),
		Tag:        pe.GetId() + "@" + pe.GetRegion(),
		URL:        pe.GetUrl(),
		TLS:        u.Scheme == "https",
		Addr:       addr,
		PoolKey:    u.Scheme + "://" + addr,
		Host:       u.Host,
		ServerName: u.Hostname(),
		PathPrefix: strings.TrimRight(u.EscapedPath(), "/"),
		Weight:     w,
	}, nil
}

// Cell is a cell with its endpoints grouped by region in the order this edge
// tries them: its own region first, then the others by latency from it, then
// regions without a latency entry by name. Immutable; shared between tables.
type Cell struct {
	id     string
	source *pb.Cell
	groups []group
	count  int
	pol    policy.Cell // source's policies, converted once
	// upgrades are the cell's allowed_upgrades, lower-cased.
	upgrades []string
}

// Upgrades are the Upgrade protocols the cell's endpoints take besides
// websocket (allowed_upgrades), lower-cased.
func (c *Cell) Upgrades() []string { return c.upgrades }

// group holds the endpoints of one region, with cumulative weights so a
// weighted pick is a search in a small array.
type group struct {
	region string
	eps    []*Endpoint
	cum    []uint64 // cum[i] = sum of weights of eps[0..i]
}

// pick returns the index of a weighted-random endpoint for rnd.
func (g *group) pick(rnd uint64) int {
	n := len(g.cum)
	if n == 1 {
		return 0
	}
	r := rnd % g.cum[n-1]
	lo, hi := 0, n-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if g.cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// ID is the cell id.
func (c *Cell) ID() string { return c.id }

// Source is the cell as the coordinators sent it. Callers must not modify it.
func (c *Cell) Source() *pb.Cell { return c.source }

// Policy is the cell's policies as this edge applies them, converted from
// Source once when the table was built, defaults filled in: what the request
// path reads (the auth policy, the breaker's local trip) instead of the
// proto. Callers must not modify it.
func (c *Cell) Policy() *policy.Cell { return &c.pol }

// Len is the number of endpoints of the cell.
func (c *Cell) Len() int { return c.count }

// PanicThreshold is the cell's panic_threshold_percent: 0 when panic
// routing is off, else at most 100 (larger configured values count as 100).
func (c *Cell) PanicThreshold() uint32 { return c.pol.PanicThresholdPercent }

// Panic reports whether the cell is in panic at nowUnixNano: its panic
// threshold is set and fewer than that percentage of its endpoints (all
// regions) are routable, routable*100 < threshold*Len(). In panic the
// caller routes over every endpoint in candidate order, ignoring what the
// gates say, as Envoy does below its healthy_panic_threshold: a cell whose
// endpoints all look bad is better served by trying them than by refusing
// everything. routable is the number of endpoints whose gate allows a
// request; it is counted (one Gate.Check per endpoint, no allocation) only
// when a threshold is set, and is 0 otherwise.
func (c *Cell) Panic(nowUnixNano int64) (routable int, panicking bool) {
	pct := c.pol.PanicThresholdPercent
	if pct == 0 {
		return 0, false
	}
	for i := range c.groups {
		for _, ep := range c.groups[i].eps {
			if ep.Gate.Check(nowUnixNano) == Allowed {
				routable++
			}
		}
	}
	return routable, uint64(routable)*100 < uint64(pct)*uint64(c.count)
}

// Regions lists the regions of the cell's endpoints in the order this edge
// tries them. It allocates; it is meant for tests and diagnostics.
func (c *Cell) Regions() []string {
	out := make([]string, len(c.groups))
	for i := range c.groups {
		out[i] = c.groups[i].region
	}
	return out
}

// Candidates returns an iterator over the cell's endpoints in fallback order
// for one request: a weighted pick (driven by rnd) in the nearest region,
// then the other endpoints of that region, then the same for each next
// region. Every endpoint is returned exactly once. The iterator is a value:
// keep it on the stack and the whole walk allocates nothing.
func (c *Cell) Candidates(rnd uint64) Candidates {
	return Candidates{cell: c, rnd: rnd}
}

// Candidates walks a cell's endpoints in fallback order; see Cell.Candidates.
// The zero value yields nothing.
type Candidates struct {
	cell  *Cell
	rnd   uint64
	group int
	tried int
	start int
}

// Next returns the next endpoint to try, or nil when every endpoint was returned.
func (it *Candidates) Next() *Endpoint {
	if it.cell == nil {
		return nil
	}
	for it.group < len(it.cell.groups) {
		g := &it.cell.groups[it.group]
		if it.tried == 0 {
			it.start = g.pick(it.rnd)
		}
		if it.tried < len(g.eps) {
			i := it.start + it.tried
			if i >= len(g.eps) {
				i -= len(g.eps)
			}
			it.tried++
			return g.eps[i]
		}
		it.group++
		it.tried = 0
	}
	return nil
}

// buildCell precomputes a cell for an edge whose distances to other regions
// are in o. Endpoints whose proto did not change are reused from prev.
// Each endpoint gets its gate from gs; gates gs had to create are appended
// to created.
func buildCell(pc *pb.Cell, o *order, prev *Cell, gs *gates, created *[]*Gate) (*Cell, error) {
	pol := policy.CellOf(pc)
	up := policy.UpstreamOf(pc)
	old := map[string]*Endpoint{}
	if prev != nil {
		for i := range prev.groups {
			for _, ep := range prev.groups[i].eps {
				old[ep.ID] = ep
			}
		}
	}
	byRegion := map[string]*group{}
	var groups []*group
	for _, pe := range pc.GetEndpoints() {
		ep := old[pe.GetId()]
		if ep == nil || ep.URL != pe.GetUrl() || ep.Region != pe.GetRegion() || ep.Weight != max(pe.GetWeight(), 1) || ep.poolTag != up.PoolTag {
			var err error
			if ep, err = newEndpoint(pe); err != nil {
				return nil, fmt.Errorf("cell %q: %w", pc.GetId(), err)
			}
			ep.poolTag = up.PoolTag
			if ep.TLS && up.PoolTag != "" {
				ep.UpstreamTLS = up.TLSConfig(ep.ServerName)
				ep.PoolKey += "#" + up.PoolTag // never shared with a cell that verifies otherwise
			}
		}
		gate, isNew := gs.get(ep.ID, pol.Breaker)
		if isNew {
			*created = append(*created, gate)
		}
		if ep.Gate != gate {
			ne := *ep
			ne.Gate = gate
			ep = &ne
		}
		g := byRegion[ep.Region]
		if g == nil {
			g = &group{region: ep.Region}
			byRegion[ep.Region] = g
			groups = append(groups, g)
		}
		var sum uint64
		if n := len(g.cum); n > 0 {
			sum = g.cum[n-1]
		}
		g.eps = append(g.eps, ep)
		g.cum = append(g.cum, sum+uint64(ep.Weight))
	}
	slices.SortFunc(groups, func(a, b *group) int { return o.compare(a.region, b.region) })
	c := &Cell{id: pc.GetId(), source: pc, groups: make([]group, len(groups)), count: len(pc.GetEndpoints()), pol: pol, upgrades: up.Upgrades}
	for i, g := range groups {
		c.groups[i] = *g
	}
	return c, nil
}
