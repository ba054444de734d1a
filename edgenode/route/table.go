package route

import (
	"fmt"
	"hash/maphash"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// bucketBits sets how many shards the placements are split into. A change
// copies only the shards it touches: with 1024 shards and 100,000 placements
// that is about 100 entries per touched shard.
const (
	bucketBits = 10
	numBuckets = 1 << bucketBits
)

type buckets [numBuckets]map[string]string

// Table is an immutable routing snapshot at one revision, precomputed for one
// edge region. All methods are safe for concurrent use; nothing reachable
// from a Table is ever modified after it is returned.
type Table struct {
	region      string
	revision    uint64
	seed        maphash.Seed
	buckets     *buckets // key -> cell id, sharded by hash of the key
	placements  int
	cells       map[string]*Cell
	refs        map[string]int32 // cell id -> number of placements naming it
	topology    *pb.Topology
	order       *order
	defaultCell *Cell
	members     []*pb.Member
	gates       *gates                       // shared by every table of the lineage
	breakers    map[string]*pb.BreakerStatus // endpoint id -> replicated breaker; absent: closed
	health      map[string]*pb.HealthStatus  // endpoint id -> replicated verdict; absent: unknown
	keys        map[string]*Key              // API key id -> key, revoked ones included
	keySources  map[string]*pb.ApiKey        // the same keys as received
	clusterID   string                       // the cluster the state came from; "" unknown
}

// Empty returns a table at revision 0 with nothing in it, for an edge in region.
func Empty(region string) *Table {
	t, _ := NewBuilder(region).Finish(0)
	return t
}

// Build builds the table for an edge in region from a whole state.
func Build(region string, st *pb.State) (*Table, error) {
	b := NewBuilder(region)
	if err := b.LoadState(st); err != nil {
		return nil, err
	}
	return b.Finish(st.GetRevision())
}

// Replace builds the table for a whole state (a Watch reset) that keeps t's
// per-endpoint gates, so local trips and unreported outcomes survive the
// reset. Endpoints the state lists no breaker or verdict for are closed and
// of unknown health. t is not modified.
func (t *Table) Replace(st *pb.State) (*Table, error) {
	b := newBuilder(t.region, t.gates)
	b.reset = true
	if err := b.LoadState(st); err != nil {
		return nil, err
	}
	return b.Finish(st.GetRevision())
}

// Apply returns a new table with every event of ch applied, at ch's revision.
// t is not modified. On error (ErrStaleRevision, ErrUnknownCell, ...) nothing
// of ch is applied.
func (t *Table) Apply(ch *pb.Change) (*Table, error) {
	if ch.GetRevision() <= t.revision {
		return nil, fmt.Errorf("%w: change %d, table %d", ErrStaleRevision, ch.GetRevision(), t.revision)
	}
	b := t.Edit()
	for _, ev := range ch.GetEvents() {
		if err := b.Apply(ev); err != nil {
			return nil, fmt.Errorf("revision %d: %w", ch.GetRevision(), err)
		}
	}
	nt, err := b.Finish(ch.GetRevision())
	if err != nil {
		return nil, fmt.Errorf("revision %d: %w", ch.GetRevision(), err)
	}
	return nt, nil
}

// WithRevision returns a table with the same content at revision rev: what an
// edge serves after the coordinators report progress without changes.
func (t *Table) WithRevision(rev uint64) *Table {
	nt := *t
	nt.revision = rev
	return &nt
}

// Lookup returns the cell serving key: its placement's cell, else the default
// cell, else nil. It neither locks nor allocates.
func (t *Table) Lookup(key []byte) *Cell {
	m := t.buckets[maphash.Bytes(t.seed, key)&(numBuckets-1)]
	if id, ok := m[string(key)]; ok {
		return t.cells[id]
	}
	return t.defaultCell
}

// LookupString is Lookup for a string key.
func (t *Table) LookupString(key string) *Cell {
	m := t.buckets[maphash.String(t.seed, key)&(numBuckets-1)]
	if id, ok := m[key]; ok {
		return t.cells[id]
	}
	return t.defaultCell
}

// Placement returns the cell id placed for key, if any (ignoring the default cell).
func (t *Table) Placement(key string) (string, bool) {
	id, ok := t.buckets[maphash.String(t.seed, key)&(numBuckets-1)][key]
	return id, ok
}

// RangePlacements calls fn for every placement, in no particular order, until fn returns false.
func (t *Table) RangePlacements(fn func(key, cell string) bool) {
	for _, m := range t.buckets {
		for k, c := range m {
			if !fn(k, c) {
				return
			}
		}
	}
}

// Revision is the revision of the state this table reflects; 0 for no state.
func (t *Table) Revision() uint64 { return t.revision }

// ClusterID is the id of the cluster the table's state came from
// (State.cluster_id); "" when it came from a cluster that had none yet.
// Revisions of two clusters do not compare.
func (t *Table) ClusterID() string { return t.clusterID }

// Region is the edge region the table was precomputed for.
func (t *Table) Region() string { return t.region }

// Placements is the number of placements.
func (t *Table) Placements() int { return t.placements }

// Cell returns the cell with id, or nil.
func (t *Table) Cell(id string) *Cell { return t.cells[id] }

// CellIDs returns the ids of all cells, unordered. It allocates.
func (t *Table) CellIDs() []string {
	out := make([]string, 0, len(t.cells))
	for id := range t.cells {
		out = append(out, id)
	}
	return out
}

// DefaultCell is the cell serving keys without a placement, or nil.
func (t *Table) DefaultCell() *Cell { return t.defaultCell }

// Topology is the regions, latencies and default cell id. Callers must not modify it.
func (t *Table) Topology() *pb.Topology { return t.topology }

// Members are the coordinators the state knows. Callers must not modify them.
func (t *Table) Members() []*pb.Member { return t.members }

// Breaker is the replicated breaker status of endpoint id, or nil (closed).
// Callers must not modify it.
func (t *Table) Breaker(id string) *pb.BreakerStatus { return t.breakers[id] }

// Health is the replicated health verdict of endpoint id, or nil (unknown).
// Callers must not modify it.
func (t *Table) Health(id string) *pb.HealthStatus { return t.health[id] }

// Gate returns the gate of endpoint id, or nil when no cell has it. It
// walks the cells: for diagnostics and tests, not the request path.
func (t *Table) Gate(id string) *Gate {
	var g *Gate
	t.forEachEndpoint(func(_ *Cell, ep *Endpoint) {
		if ep.ID == id {
			g = ep.Gate
		}
	})
	return g
}

// Gates returns the gate of every endpoint in the table, with the cell
// each belongs to, unordered. It allocates; it is for the background
// reporter and prober, not the request path.
func (t *Table) Gates() []CellGate {
	var out []CellGate
	t.forEachEndpoint(func(c *Cell, ep *Endpoint) {
		out = append(out, CellGate{Cell: c, Endpoint: ep})
	})
	return out
}

// Wake delivers a value when some endpoint's outcomes should be reported
// now rather than at the next tick: this edge just tripped it locally, or
// its run of failures reached the breaker's threshold. One channel serves
// every table of the lineage; several requests may arrive as one.
func (t *Table) Wake() <-chan struct{} { return t.gates.wake }

// CellGate is one endpoint with its cell, as Table.Gates lists them.
type CellGate struct {
	Cell     *Cell
	Endpoint *Endpoint
}

func (t *Table) forEachEndpoint(fn func(*Cell, *Endpoint)) {
	for _, c := range t.cells {
		for i := range c.groups {
			for _, ep := range c.groups[i].eps {
				fn(c, ep)
			}
		}
	}
}
