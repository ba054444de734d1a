package state

import (
	"slices"
	"strings"

	"github.com/tidwall/btree"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// applyConfig replaces the whole routing config with cfg. Objects equal to
// the stored ones (ignoring stamps) are left alone, stamps included; the
// events are the difference, in the order the package doc promises. Members
// are not part of the routing config and are kept.
func (tx *txn) applyConfig(cfg *pb.RoutingConfig) ([]*pb.Event, *pb.CommandError) {
	if e := ValidateConfig(cfg); e != nil {
		return nil, e
	}
	var events []*pb.Event
	if topo := newTopology(cfg.GetRegions(), cfg.GetLatencies(), cfg.GetDefaultCell()); !topo.equal(tx.topo) {
		tx.topo = topo
		events = append(events, &pb.Event{Kind: &pb.Event_SetTopology{SetTopology: topo.proto()}})
	}
	putCells, removedCells := tx.replaceCells(cfg.GetCells())
	putPlacements, deletePlacements := tx.replacePlacements(cfg.GetPlacements())
	events = append(events, putCells...)
	events = append(events, putPlacements...)
	events = append(events, deletePlacements...)
	for _, c := range removedCells {
		tx.t.cells.Delete(c.GetId())
		events = append(events, &pb.Event{Kind: &pb.Event_DeleteCell{DeleteCell: c.GetId()}})
	}
	return events, nil
}

// update is an object of the new config that differs from the stored one
// (old is nil when the object is new).
type update[V any] struct{ old, want *V }

// diff compares want with the objects stored in m, by key: it returns the
// new and changed ones, ordered by key, and the stored ones that want lacks,
// in key order. It writes nothing.
func diff[V any](m *btree.Map[string, *V], want []*V, key func(*V) string, same func(a, b *V) bool) (updates []update[V], removed []*V) {
	keys := make(map[string]struct{}, len(want))
	for _, w := range want {
		k := key(w)
		keys[k] = struct{}{}
		if old, _ := m.Get(k); old == nil || !same(old, w) {
			updates = append(updates, update[V]{old, w})
		}
	}
	m.Scan(func(k string, v *V) bool {
		if _, ok := keys[k]; !ok {
			removed = append(removed, v)
		}
		return true
	})
	slices.SortFunc(updates, func(a, b update[V]) int { return strings.Compare(key(a.want), key(b.want)) })
	return updates, removed
}

// replaceCells stores the new and changed cells of want and returns their
// put_cell events, by id, and the stored cells that want no longer has. Those
// are not deleted yet: the caller deletes them once no placement refers to
// them.
func (tx *txn) replaceCells(want []*pb.Cell) (puts []*pb.Event, removed []*pb.Cell) {
	updates, removed := diff(tx.t.cells, want, (*pb.Cell).GetId, sameCell)
	// An endpoint may move from one cell to another within one config: forget
	// every old owner before recording any new one.
	for _, u := range updates {
		if u.old != nil {
			tx.t.unindexEndpoints(u.old)
		}
	}
	for _, c := range removed {
		tx.t.unindexEndpoints(c)
	}
	for _, u := range updates {
		stored := tx.stampCell(u.old, u.want)
		tx.t.indexEndpoints(stored)
		tx.t.cells.Set(stored.GetId(), stored)
		puts = append(puts, putCellEvent(stored))
	}
	return puts, removed
}

// replacePlacements makes the placements equal to want and returns the
// put_placement and delete_placement events, each by key.
func (tx *txn) replacePlacements(want []*pb.Placement) (puts, deletes []*pb.Event) {
	updates, removed := diff(tx.t.placements, want, (*pb.Placement).GetKey, samePlacement)
	for _, u := range updates {
		stored := tx.stampPlacement(u.old, u.want)
		tx.t.putPlacement(u.old, stored)
		puts = append(puts, putPlacementEvent(stored))
	}
	for _, p := range removed {
		tx.t.deletePlacement(p)
		deletes = append(deletes, deletePlacementEvent(p.GetKey()))
	}
	return puts, deletes
}
