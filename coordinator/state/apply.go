package state

import (
	"fmt"
	"slices"
	"time"

	"github.com/tidwall/btree"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Apply applies the command committed at raft log index and returns what the
// proposer gets back, plus the Change to publish to watchers.
//
//   - Success with an effect: the state moves to revision index; the result
//     holds revision=index and the Change lists every event, with stamped
//     copies of the objects (the caller owns them).
//   - Success without an effect (the command asks for what is already there):
//     result revision = current revision, nil Change.
//   - Refusal (expect_revision mismatch, invalid input, missing object,
//     conflict): result revision = current revision and error set, nil
//     Change, state untouched.
//
// A command whose op this binary does not know (see "Versioned operations"
// in the package doc) changes nothing: when it is ignorable, the result says
// skipped; when it is not, the store halts: the result is a CODE_UNKNOWN_OP
// refusal, Halted reports why, and every later Apply refuses the same way
// without looking at its command, so the state stays exactly as it was
// after the last command this binary could apply.
//
// Apply never blocks on readers. It panics when cmd has no operation at all
// or index is not above the current revision: both mean the log was decoded
// or fed wrongly, and applying anyway would let replicas diverge.
func (s *Store) Apply(index uint64, cmd *pb.Command) (*pb.CommandResult, *pb.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	if index <= cur.revision {
		panic(fmt.Sprintf("state: apply of index %d at revision %d: raft indexes must grow", index, cur.revision))
	}
	if h := s.halted.Load(); h != nil {
		return haltedResult(cur.revision, h), nil
	}
	op, spec := ops.lookup(cmd)
	switch {
	case op.Number == 0:
		panic(fmt.Sprintf("state: command at index %d has no operation: the log entry was decoded wrongly", index))
	case spec == nil && cmd.GetIgnorable():
		return &pb.CommandResult{Revision: cur.revision, Skipped: true}, nil
	case spec == nil:
		h := &HaltError{Index: index, Op: op}
		s.halted.Store(h)
		return haltedResult(cur.revision, h), nil
	}
	if exp := cmd.GetExpectRevision(); exp != 0 && exp != cur.revision {
		return &pb.CommandResult{Revision: cur.revision, Error: revisionMismatch(exp, cur.revision)}, nil
	}
	tx := &txn{index: index, now: nowOf(cmd), topo: cur.topo, t: s.master.isoCopy()}
	events, cerr := tx.run(spec, cmd)
	if cerr != nil {
		return &pb.CommandResult{Revision: cur.revision, Error: cerr}, nil
	}
	tx.noteOp(op, spec)
	if len(events) == 0 {
		if tx.dirty {
			// Counters moved but nothing anyone watches: same revision, no Change.
			s.master = tx.t
			s.publish(cur.revision, tx.topo)
		}
		return &pb.CommandResult{Revision: cur.revision, ProbeGranted: tx.granted, Fresh: tx.fresh, BatchErrors: tx.batchErrs}, nil
	}
	s.master = tx.t
	s.publish(index, tx.topo)
	return &pb.CommandResult{Revision: index, ProbeGranted: tx.granted, BatchErrors: tx.batchErrs}, &pb.Change{Revision: index, Events: events}
}

// Halted returns nil while the store applies commands, and the *HaltError
// naming the op and index once it met one it cannot apply.
func (s *Store) Halted() error {
	if h := s.halted.Load(); h != nil {
		return h
	}
	return nil
}

// halt stops the store as a command it cannot apply would (Restore calls it
// with the error of a snapshot whose state applied such an op). A store
// halts once; later halts keep the first reason.
func (s *Store) halt(h *HaltError) { s.halted.CompareAndSwap(nil, h) }

func haltedResult(revision uint64, h *HaltError) *pb.CommandResult {
	return &pb.CommandResult{Revision: revision, Error: commandError(pb.CommandError_CODE_UNKNOWN_OP, "", "%s", h.Error())}
}

// txn is one command being applied to private copies of the tables. Each
// operation checks everything before it writes, and a refused txn is simply
// dropped.
type txn struct {
	index uint64
	now   time.Time // the leader's timestamp carried by the command
	topo  *topology
	t     tables
	// dirty: breaker or health state changed, with or without events.
	dirty bool
	// granted: a GrantProbeOp's answer.
	granted bool
	// fresh: a CheckNoncesOp's answers.
	fresh []bool
	// batchErrs: a ReportBatchOp's answers.
	batchErrs []*pb.CommandError
}

// noteOp records in the tables that a non-ignorable command of op was
// applied, the first time: a snapshot then tells a binary that does not
// apply op that it cannot restore it (see FromSnapshot).
func (tx *txn) noteOp(op Op, spec *opSpec) {
	n := uint32(op.Number)
	i, found := slices.BinarySearch(tx.t.opsApplied, n)
	if found || spec.ignorable {
		return
	}
	tx.t.opsApplied = slices.Insert(slices.Clone(tx.t.opsApplied), i, n)
	tx.dirty = true
}

// run applies the op that spec describes.
func (tx *txn) run(spec *opSpec, cmd *pb.Command) ([]*pb.Event, *pb.CommandError) {
	events, e := spec.apply(tx, cmd)
	if spec.config && len(events) > 0 {
		tx.reconcileEndpointStates()
	}
	return events, e
}

// stampCell returns a copy of c stamped for this txn; old is the stored
// version (nil when c is new), whose create_revision survives.
func (tx *txn) stampCell(old, c *pb.Cell) *pb.Cell {
	out := cloneCell(c)
	out.CreateRevision, out.ModRevision = tx.index, tx.index
	if old != nil {
		out.CreateRevision = old.GetCreateRevision()
	}
	return out
}

func (tx *txn) stampPlacement(old, p *pb.Placement) *pb.Placement {
	out := &pb.Placement{Key: p.GetKey(), Cell: p.GetCell(), CreateRevision: tx.index, ModRevision: tx.index}
	if old != nil {
		out.CreateRevision = old.GetCreateRevision()
	}
	return out
}

func (tx *txn) putCell(c *pb.Cell) ([]*pb.Event, *pb.CommandError) {
	if c == nil {
		return nil, invalid("cell", "cell is required")
	}
	if e := validateCell(c, tx.topo.regionIndex); e != nil {
		return nil, prefixed("cell.", e)
	}
	for j, ep := range c.GetEndpoints() {
		if owner, ok := tx.t.endpoints.Get(ep.GetId()); ok && owner != c.GetId() {
			return nil, invalid(fmt.Sprintf("cell.endpoints[%d].id", j),
				"endpoint id %q is already used by cell %q; endpoint ids are unique across all cells", ep.GetId(), owner)
		}
	}
	old, _ := tx.t.cells.Get(c.GetId())
	if old != nil && sameCell(old, c) {
		return nil, nil
	}
	stored := tx.stampCell(old, c)
	if old != nil {
		tx.t.unindexEndpoints(old)
	}
	tx.t.indexEndpoints(stored)
	tx.t.cells.Set(stored.GetId(), stored)
	return []*pb.Event{putCellEvent(stored)}, nil
}

func (tx *txn) deleteCell(id string) ([]*pb.Event, *pb.CommandError) {
	old, e := existing(tx.t.cells, "cell", "id", id)
	if e != nil {
		return nil, e
	}
	if n, first := tx.t.placementsOf(id); n > 0 {
		return nil, failedPrecondition("id", "cell %q is used by %d placement(s), for example %q; delete them or move them to another cell first", id, n, first)
	}
	if tx.topo.defaultCell == id {
		return nil, failedPrecondition("id", "cell %q is the default cell; set another default_cell (or none) first", id)
	}
	tx.t.unindexEndpoints(old)
	tx.t.cells.Delete(id)
	return []*pb.Event{{Kind: &pb.Event_DeleteCell{DeleteCell: id}}}, nil
}

func (tx *txn) putPlacement(p *pb.Placement) ([]*pb.Event, *pb.CommandError) {
	if p == nil {
		return nil, invalid("placement", "placement is required")
	}
	if e := validatePlacement(p); e != nil {
		return nil, prefixed("placement.", e)
	}
	if _, ok := tx.t.cells.Get(p.GetCell()); !ok {
		return nil, invalid("placement.cell", "cell %q does not exist; create the cell before placing keys on it", p.GetCell())
	}
	old, _ := tx.t.placements.Get(p.GetKey())
	if old != nil && samePlacement(old, p) {
		return nil, nil
	}
	stored := tx.stampPlacement(old, p)
	tx.t.putPlacement(old, stored)
	return []*pb.Event{putPlacementEvent(stored)}, nil
}

func (tx *txn) deletePlacement(key string) ([]*pb.Event, *pb.CommandError) {
	old, e := existing(tx.t.placements, "placement", "key", key)
	if e != nil {
		return nil, e
	}
	tx.t.deletePlacement(old)
	return []*pb.Event{deletePlacementEvent(key)}, nil
}

func (tx *txn) putMember(m *pb.Member) ([]*pb.Event, *pb.CommandError) {
	if e := ValidateMember(m); e != nil {
		return nil, e
	}
	if old, ok := tx.t.members.Get(m.GetName()); ok && sameMember(old, m) {
		return nil, nil
	}
	stored := cloneMember(m)
	tx.t.members.Set(stored.GetName(), stored)
	return []*pb.Event{{Kind: &pb.Event_PutMember{PutMember: cloneMember(stored)}}}, nil
}

func (tx *txn) deleteMember(name string) ([]*pb.Event, *pb.CommandError) {
	if _, e := existing(tx.t.members, "member", "name", name); e != nil {
		return nil, e
	}
	tx.t.members.Delete(name)
	return []*pb.Event{{Kind: &pb.Event_DeleteMember{DeleteMember: name}}}, nil
}

// existing returns the stored object that a delete names, or the refusal:
// INVALID_ARGUMENT for an empty name, NOT_FOUND for an unknown one.
func existing[V any](m *btree.Map[string, V], what, field, name string) (V, *pb.CommandError) {
	v, ok := m.Get(name)
	switch {
	case name == "":
		return v, invalid(field, "%s %s is required", what, field)
	case !ok:
		return v, notFound(field, "%s %q does not exist", what, name)
	}
	return v, nil
}

// Events carry their own copies: the store's objects are shared by every
// published version and must never be reachable by a caller that might write.

func putCellEvent(c *pb.Cell) *pb.Event {
	return &pb.Event{Kind: &pb.Event_PutCell{PutCell: cloneCell(c)}}
}

func putPlacementEvent(p *pb.Placement) *pb.Event {
	return &pb.Event{Kind: &pb.Event_PutPlacement{PutPlacement: clonePlacement(p)}}
}

func deletePlacementEvent(key string) *pb.Event {
	return &pb.Event{Kind: &pb.Event_DeletePlacement{DeletePlacement: key}}
}
