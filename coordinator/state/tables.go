package state

import (
	"github.com/tidwall/btree"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// btreeDegree keeps nodes small (at most 31 items) so that the copy-on-write
// of a path during Apply copies under a kilobyte per level; it measured
// faster than 32 in BenchmarkApplyPutPlacement.
const btreeDegree = 16

// byCellSep separates cell id and key in the by-cell index. Neither ids nor
// keys may contain it, so "c1\x00k" sorts with the other keys of c1.
const byCellSep = "\x00"

// tables are the indexed objects of one version of the state. A published
// version's tables are never written again; Apply writes to a private
// isoCopy and publishes another isoCopy of the result.
type tables struct {
	cells      *btree.Map[string, *pb.Cell]      // id -> cell
	endpoints  *btree.Map[string, string]        // endpoint id -> id of the cell that owns it
	placements *btree.Map[string, *pb.Placement] // key -> placement
	byCell     *btree.Map[string, struct{}]      // cell id + byCellSep + key, for "who uses this cell"
	members    *btree.Map[string, *pb.Member]    // name -> member
	epStates   *btree.Map[string, endpointState] // endpoint id -> breaker and health, once reported on
	keys       *btree.Map[string, *pb.ApiKey]    // key id -> API key
	nonces     *btree.Map[string, nonceEntry]    // nonceKey(key id, nonce) -> entry
	// nonceExpiry indexes nonces by expiry: expiryKey(expires, nonceKey) -> nothing.
	nonceExpiry *btree.Map[string, struct{}]
	reports     *btree.Map[string, reportRecord] // edge -> its last counted report batches
	// reportExpiry indexes reports by expiry: expiryKey(expires, edge) -> nothing.
	reportExpiry *btree.Map[string, struct{}]
	// clusterID is the cluster's id (cluster.go); "" until it is set.
	clusterID string
	// opsApplied lists, ascending, the ops of the non-ignorable commands
	// applied so far (Snapshot.ops_applied); never written in place.
	opsApplied []uint32
}

func newTables() tables {
	return tables{
		cells:      btree.NewMap[string, *pb.Cell](btreeDegree),
		endpoints:  btree.NewMap[string, string](btreeDegree),
		placements: btree.NewMap[string, *pb.Placement](btreeDegree),
		byCell:     btree.NewMap[string, struct{}](btreeDegree),
		members:    btree.NewMap[string, *pb.Member](btreeDegree),
		epStates:   btree.NewMap[string, endpointState](btreeDegree),
		keys:       btree.NewMap[string, *pb.ApiKey](btreeDegree),
		// Nonces come and go by the tens of thousands a second: wider nodes
		// mean fewer levels to copy per insert.
		nonces:       btree.NewMap[string, nonceEntry](64),
		nonceExpiry:  btree.NewMap[string, struct{}](64),
		reports:      btree.NewMap[string, reportRecord](btreeDegree),
		reportExpiry: btree.NewMap[string, struct{}](btreeDegree),
	}
}

// isoCopy returns tables sharing every node with t; a later write to either
// copies the nodes it touches. It writes to t's headers, so t must not be
// a published version.
func (t tables) isoCopy() tables {
	return tables{
		cells:        t.cells.IsoCopy(),
		endpoints:    t.endpoints.IsoCopy(),
		placements:   t.placements.IsoCopy(),
		byCell:       t.byCell.IsoCopy(),
		members:      t.members.IsoCopy(),
		epStates:     t.epStates.IsoCopy(),
		keys:         t.keys.IsoCopy(),
		nonces:       t.nonces.IsoCopy(),
		nonceExpiry:  t.nonceExpiry.IsoCopy(),
		reports:      t.reports.IsoCopy(),
		reportExpiry: t.reportExpiry.IsoCopy(),
		clusterID:    t.clusterID,
		opsApplied:   t.opsApplied,
	}
}

func byCellKey(cell, key string) string { return cell + byCellSep + key }

// placementsOf counts the placements on cell and returns the first key in
// order, in O(log n + count).
func (t tables) placementsOf(cell string) (count int, first string) {
	prefix := cell + byCellSep
	t.byCell.Ascend(prefix, func(k string, _ struct{}) bool {
		if len(k) < len(prefix) || k[:len(prefix)] != prefix {
			return false
		}
		if count == 0 {
			first = k[len(prefix):]
		}
		count++
		return true
	})
	return count, first
}

func (t tables) indexEndpoints(c *pb.Cell) {
	for _, ep := range c.GetEndpoints() {
		t.endpoints.Set(ep.GetId(), c.GetId())
	}
}

func (t tables) unindexEndpoints(c *pb.Cell) {
	for _, ep := range c.GetEndpoints() {
		t.endpoints.Delete(ep.GetId())
	}
}

// putPlacement stores p (already stamped), replacing old when non-nil.
func (t tables) putPlacement(old, p *pb.Placement) {
	if old != nil && old.GetCell() != p.GetCell() {
		t.byCell.Delete(byCellKey(old.GetCell(), old.GetKey()))
	}
	t.byCell.Set(byCellKey(p.GetCell(), p.GetKey()), struct{}{})
	t.placements.Set(p.GetKey(), p)
}

func (t tables) deletePlacement(old *pb.Placement) {
	t.byCell.Delete(byCellKey(old.GetCell(), old.GetKey()))
	t.placements.Delete(old.GetKey())
}
