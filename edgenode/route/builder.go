package route

import (
	"fmt"
	"hash/maphash"
	"maps"
	"slices"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Builder makes a new Table, either from nothing (NewBuilder) or as an edit of
// an existing one (Table.Edit), copying on first write only the parts it
// changes. Events are recorded as they come; validation and the per-region
// precomputation happen in Finish, so a change whose events are valid as a
// whole is accepted whatever their order. A Builder is not safe for concurrent
// use; the tables it returns are.
type Builder struct {
	t           Table
	ownArray    bool
	owned       [numBuckets / 64]uint64
	ownCells    bool
	ownRefs     bool
	ownMembers  bool
	topoChanged bool
	ownBreakers bool
	ownHealth   bool
	ownKeys     bool
	reset       bool                // a whole state: reconcile every gate in Finish
	cellsGone   bool                // a cell was deleted: prune gates and statuses
	puts        map[string]*pb.Cell // cells put in this edit, built in Finish
	touched     map[string]struct{} // cells whose placements or existence changed
	statuses    map[string]struct{} // endpoints whose breaker or verdict changed
}

// NewBuilder starts an empty table for an edge in region.
func NewBuilder(region string) *Builder {
	return newBuilder(region, newGates())
}

func newBuilder(region string, gs *gates) *Builder {
	b := &Builder{t: Table{
		gates:      gs,
		breakers:   map[string]*pb.BreakerStatus{},
		health:     map[string]*pb.HealthStatus{},
		keys:       map[string]*Key{},
		keySources: map[string]*pb.ApiKey{},
		region:     region,
		seed:       maphash.MakeSeed(),
		buckets:    new(buckets),
		cells:      map[string]*Cell{},
		refs:       map[string]int32{},
		topology:   &pb.Topology{},
	}}
	b.t.order = newOrder(region, nil)
	b.own()
	return b
}

// Edit starts a new table from t. t itself is never modified.
func (t *Table) Edit() *Builder {
	return &Builder{t: *t}
}

// own marks every part as belonging to the builder (a brand new table).
func (b *Builder) own() {
	b.ownArray, b.ownCells, b.ownRefs, b.ownMembers = true, true, true, true
	b.ownBreakers, b.ownHealth, b.ownKeys = true, true, true
	for i := range b.owned {
		b.owned[i] = ^uint64(0)
	}
}

// LoadState records every part of a whole state.
func (b *Builder) LoadState(st *pb.State) error {
	b.SetClusterID(st.GetClusterId())
	cfg := st.GetConfig()
	b.SetTopology(&pb.Topology{Regions: cfg.GetRegions(), Latencies: cfg.GetLatencies(), DefaultCell: cfg.GetDefaultCell()})
	for _, c := range cfg.GetCells() {
		if err := b.PutCell(c); err != nil {
			return err
		}
	}
	for _, p := range cfg.GetPlacements() {
		if err := b.PutPlacement(p.GetKey(), p.GetCell()); err != nil {
			return err
		}
	}
	for _, m := range st.GetMembers() {
		if err := b.PutMember(m); err != nil {
			return err
		}
	}
	for _, s := range st.GetBreakers() {
		if err := b.PutBreaker(s); err != nil {
			return err
		}
	}
	for _, s := range st.GetHealth() {
		if err := b.PutHealth(s); err != nil {
			return err
		}
	}
	for _, k := range st.GetKeys() {
		if err := b.PutKey(k); err != nil {
			return err
		}
	}
	return nil
}

// Apply records one event.
func (b *Builder) Apply(ev *pb.Event) error {
	switch k := ev.GetKind().(type) {
	case *pb.Event_PutCell:
		return b.PutCell(k.PutCell)
	case *pb.Event_DeleteCell:
		return b.DeleteCell(k.DeleteCell)
	case *pb.Event_PutPlacement:
		return b.PutPlacement(k.PutPlacement.GetKey(), k.PutPlacement.GetCell())
	case *pb.Event_DeletePlacement:
		return b.DeletePlacement(k.DeletePlacement)
	case *pb.Event_SetTopology:
		b.SetTopology(k.SetTopology)
		return nil
	case *pb.Event_PutMember:
		return b.PutMember(k.PutMember)
	case *pb.Event_DeleteMember:
		return b.DeleteMember(k.DeleteMember)
	case *pb.Event_PutBreaker:
		return b.PutBreaker(k.PutBreaker)
	case *pb.Event_PutHealth:
		return b.PutHealth(k.PutHealth)
	case *pb.Event_PutKey:
		return b.PutKey(k.PutKey)
	case *pb.Event_SetClusterId:
		if k.SetClusterId == "" {
			return fmt.Errorf("%w: set_cluster_id without an id", ErrInvalidEvent)
		}
		b.SetClusterID(k.SetClusterId)
		return nil
	default:
		return fmt.Errorf("%w: event of unknown kind %T", ErrInvalidEvent, k)
	}
}

// SetClusterID records the id of the cluster the state comes from.
func (b *Builder) SetClusterID(id string) { b.t.clusterID = id }

// SetTopology replaces regions, latencies and the default cell.
func (b *Builder) SetTopology(topo *pb.Topology) {
	if topo == nil {
		topo = &pb.Topology{}
	}
	b.t.topology = topo
	b.topoChanged = true
}

// PutCell creates or replaces a cell.
func (b *Builder) PutCell(c *pb.Cell) error {
	if c.GetId() == "" {
		return fmt.Errorf("%w: cell without id", ErrInvalidEvent)
	}
	if b.puts == nil {
		b.puts = map[string]*pb.Cell{}
	}
	b.puts[c.GetId()] = c
	b.touch(c.GetId())
	return nil
}

// DeleteCell removes a cell; deleting a missing cell is not an error.
func (b *Builder) DeleteCell(id string) error {
	if id == "" {
		return fmt.Errorf("%w: delete_cell without id", ErrInvalidEvent)
	}
	delete(b.puts, id)
	if _, ok := b.t.cells[id]; ok {
		b.writableCells()
		delete(b.t.cells, id)
		b.cellsGone = true
	}
	b.touch(id)
	return nil
}

// PutPlacement places key on cell. The cell must exist when Finish runs.
func (b *Builder) PutPlacement(key, cell string) error {
	if key == "" || cell == "" {
		return fmt.Errorf("%w: placement %q -> %q: key and cell are required", ErrInvalidEvent, key, cell)
	}
	// Share the cell's id string instead of holding one copy per placement.
	if c := b.t.cells[cell]; c != nil {
		cell = c.id
	} else if pc := b.puts[cell]; pc != nil {
		cell = pc.GetId()
	}
	m := b.bucket(key)
	old, had := m[key]
	if had && old == cell {
		return nil
	}
	m[key] = cell
	if had {
		b.addRef(old, -1)
	} else {
		b.t.placements++
	}
	b.addRef(cell, 1)
	return nil
}

// DeletePlacement removes key's placement; deleting a missing one is not an error.
func (b *Builder) DeletePlacement(key string) error {
	if key == "" {
		return fmt.Errorf("%w: delete_placement without key", ErrInvalidEvent)
	}
	if _, ok := b.t.buckets[b.index(key)][key]; !ok {
		return nil
	}
	m := b.bucket(key)
	b.addRef(m[key], -1)
	delete(m, key)
	b.t.placements--
	return nil
}

// PutBreaker records an endpoint's replicated breaker status. A status for
// an endpoint no cell has once the edit is finished is dropped.
func (b *Builder) PutBreaker(st *pb.BreakerStatus) error {
	var err error
	b.t.breakers, err = putStatus(b, b.t.breakers, &b.ownBreakers, "put_breaker", st.GetEndpoint(), st)
	return err
}

// PutHealth records an endpoint's replicated health verdict; same rules as PutBreaker.
func (b *Builder) PutHealth(st *pb.HealthStatus) error {
	var err error
	b.t.health, err = putStatus(b, b.t.health, &b.ownHealth, "put_health", st.GetEndpoint(), st)
	return err
}

// putStatus stores st under id in m, copying m first unless the builder
// owns it, and returns the map to keep.
func putStatus[V any](b *Builder, m map[string]V, own *bool, event, id string, st V) (map[string]V, error) {
	if id == "" {
		return m, fmt.Errorf("%w: %s without endpoint", ErrInvalidEvent, event)
	}
	if !*own {
		m = maps.Clone(m)
		*own = true
	}
	m[id] = st
	if b.statuses == nil {
		b.statuses = map[string]struct{}{}
	}
	b.statuses[id] = struct{}{}
	return m, nil
}

// PutMember creates or replaces a coordinator member by name.
func (b *Builder) PutMember(m *pb.Member) error {
	if m.GetName() == "" {
		return fmt.Errorf("%w: member without name", ErrInvalidEvent)
	}
	b.writableMembers()
	if i := slices.IndexFunc(b.t.members, func(x *pb.Member) bool { return x.GetName() == m.GetName() }); i >= 0 {
		b.t.members[i] = m
	} else {
		b.t.members = append(b.t.members, m)
	}
	return nil
}

// DeleteMember removes a member by name; deleting a missing one is not an error.
func (b *Builder) DeleteMember(name string) error {
	if name == "" {
		return fmt.Errorf("%w: delete_member without name", ErrInvalidEvent)
	}
	b.writableMembers()
	b.t.members = slices.DeleteFunc(b.t.members, func(x *pb.Member) bool { return x.GetName() == name })
	return nil
}

// Finish validates the edit, precomputes the changed cells and returns the
// table at revision. Afterwards the builder may keep editing; it no longer
// shares anything writable with the returned table.
func (b *Builder) Finish(revision uint64) (*Table, error) {
	var created []*Gate
	if b.topoChanged {
		b.t.order = newOrder(b.t.region, b.t.topology.GetLatencies())
		if len(b.t.cells) > 0 {
			b.writableCells()
		}
		for id, c := range b.t.cells {
			if _, put := b.puts[id]; put {
				continue
			}
			nc, err := buildCell(c.source, b.t.order, c, b.t.gates, &created)
			if err != nil {
				return nil, err
			}
			b.t.cells[id] = nc
		}
	}
	for id, pc := range b.puts {
		nc, err := buildCell(pc, b.t.order, b.t.cells[id], b.t.gates, &created)
		if err != nil {
			return nil, err
		}
		b.writableCells()
		b.t.cells[id] = nc
	}
	for id := range b.touched {
		if n := b.t.refs[id]; n > 0 && b.t.cells[id] == nil {
			return nil, fmt.Errorf("%w: %d placement(s) name cell %q", ErrUnknownCell, n, id)
		}
	}
	b.t.defaultCell = nil
	if id := b.t.topology.GetDefaultCell(); id != "" {
		if b.t.defaultCell = b.t.cells[id]; b.t.defaultCell == nil {
			return nil, fmt.Errorf("%w: default cell %q", ErrUnknownCell, id)
		}
	}
	b.t.revision = revision
	b.followStatuses(created, revision)
	t := b.t
	*b = Builder{t: t}
	return &t, nil
}

func (b *Builder) index(key string) uint64 {
	return maphash.String(b.t.seed, key) & (numBuckets - 1)
}

// bucket returns the writable shard holding key, copying it on first write.
func (b *Builder) bucket(key string) map[string]string {
	i := b.index(key)
	if b.owned[i/64]&(1<<(i%64)) == 0 {
		if !b.ownArray {
			arr := *b.t.buckets
			b.t.buckets = &arr
			b.ownArray = true
		}
		b.t.buckets[i] = maps.Clone(b.t.buckets[i])
		b.owned[i/64] |= 1 << (i % 64)
	}
	if b.t.buckets[i] == nil {
		b.t.buckets[i] = map[string]string{}
	}
	return b.t.buckets[i]
}

func (b *Builder) addRef(cell string, d int32) {
	if !b.ownRefs {
		b.t.refs = maps.Clone(b.t.refs)
		if b.t.refs == nil {
			b.t.refs = map[string]int32{}
		}
		b.ownRefs = true
	}
	if n := b.t.refs[cell] + d; n > 0 {
		b.t.refs[cell] = n
	} else {
		delete(b.t.refs, cell)
	}
	b.touch(cell)
}

func (b *Builder) touch(cell string) {
	if b.touched == nil {
		b.touched = map[string]struct{}{}
	}
	b.touched[cell] = struct{}{}
}

func (b *Builder) writableCells() {
	if !b.ownCells {
		b.t.cells = maps.Clone(b.t.cells)
		b.ownCells = true
	}
}

func (b *Builder) writableMembers() {
	if !b.ownMembers {
		b.t.members = slices.Clone(b.t.members)
		b.ownMembers = true
	}
}

// followStatuses runs once the edit is known valid: it drops gates and
// statuses of endpoints that left the config, then tells the gates the
// replicated states that changed (all of them after a reset).
func (b *Builder) followStatuses(created []*Gate, revision uint64) {
	if len(b.puts) > 0 || b.cellsGone || b.reset {
		live := map[string]struct{}{}
		b.t.forEachEndpoint(func(_ *Cell, ep *Endpoint) { live[ep.ID] = struct{}{} })
		b.t.gates.retain(live)
		b.t.breakers = prune(b.t.breakers, &b.ownBreakers, live)
		b.t.health = prune(b.t.health, &b.ownHealth, live)
	}
	follow := func(g *Gate, atRevision uint64) {
		g.setBreaker(b.t.breakers[g.id], atRevision)
		g.setHealth(b.t.health[g.id], atRevision)
	}
	if b.reset {
		b.t.forEachEndpoint(func(_ *Cell, ep *Endpoint) { follow(ep.Gate, revision) })
		return
	}
	for _, g := range created {
		follow(g, 0)
	}
	for id := range b.statuses {
		if g := b.t.gates.lookup(id); g != nil {
			follow(g, 0)
		}
	}
}

// prune drops the entries of m whose key is not live, copying m first unless
// the builder owns it.
func prune[V any](m map[string]V, own *bool, live map[string]struct{}) map[string]V {
	for id := range m {
		if _, ok := live[id]; ok {
			continue
		}
		if !*own {
			m = maps.Clone(m)
			*own = true
		}
		delete(m, id)
	}
	return m
}
