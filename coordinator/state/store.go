package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidwall/btree"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/clusterid"
)

// Store is the replicated state. Apply must be called from one goroutine at a
// time (the raft FSM; concurrent callers are serialised, never interleaved).
// Reads go through a View: Freeze captures the current version in O(1),
// safely concurrently with Apply and without a lock, and every read of that
// View answers from that one version however the store moves on. A Store has
// no read methods of its own, so an answer built from two reads cannot mix
// two revisions (or, across a snapshot restore, two stores).
type Store struct {
	mu     sync.Mutex // serialises Apply; guards master
	master tables     // Apply's private copy of the current tables
	cur    atomic.Pointer[version]
	// halted is set, once, by the first command whose op this binary
	// cannot apply; Apply applies nothing after it.
	halted atomic.Pointer[HaltError]
}

// version is one immutable version of the state.
type version struct {
	revision uint64
	topo     *topology
	t        tables
}

// topology is the part of the config that is neither cells nor placements.
type topology struct {
	regions     []*pb.Region
	latencies   []*pb.Latency
	defaultCell string
	regionIndex map[string]int // region name -> position in regions
}

func newTopology(regions []*pb.Region, latencies []*pb.Latency, defaultCell string) *topology {
	t := &topology{
		regions:     cloneRegions(regions),
		latencies:   cloneLatencies(latencies),
		defaultCell: defaultCell,
		regionIndex: make(map[string]int, len(regions)),
	}
	for i, r := range t.regions {
		t.regionIndex[r.GetName()] = i
	}
	return t
}

func (t *topology) equal(o *topology) bool {
	return t.defaultCell == o.defaultCell && sameRegions(t.regions, o.regions) && sameLatencies(t.latencies, o.latencies)
}

func (t *topology) proto() *pb.Topology {
	return &pb.Topology{Regions: cloneRegions(t.regions), Latencies: cloneLatencies(t.latencies), DefaultCell: t.defaultCell}
}

// New returns an empty store at revision 0.
func New() *Store {
	s := &Store{master: newTables()}
	s.publish(0, newTopology(nil, nil, ""))
	return s
}

// FromState builds a fresh store holding st, as taken by Snapshot (possibly on
// another member). The snapshot is validated like an ApplyConfig, and every
// stamp must satisfy 0 < create_revision <= mod_revision <= st.revision;
// otherwise FromState returns an error wrapping ErrInvalidSnapshot. The store
// does not retain st.
func FromState(st *pb.State) (*Store, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: state is nil", ErrInvalidSnapshot)
	}
	cfg := st.GetConfig()
	if cfg == nil {
		cfg = &pb.RoutingConfig{}
	}
	if e := ValidateConfig(cfg); e != nil {
		return nil, snapshotError("config.", e)
	}
	rev := st.GetRevision()
	s := &Store{master: newTables()}
	for i, c := range cfg.GetCells() {
		if err := checkStamps(fmt.Sprintf("config.cells[%d]", i), c.GetCreateRevision(), c.GetModRevision(), rev); err != nil {
			return nil, err
		}
		c = cloneCell(c)
		s.master.cells.Set(c.GetId(), c)
		s.master.indexEndpoints(c)
	}
	for i, p := range cfg.GetPlacements() {
		if err := checkStamps(fmt.Sprintf("config.placements[%d]", i), p.GetCreateRevision(), p.GetModRevision(), rev); err != nil {
			return nil, err
		}
		s.master.putPlacement(nil, clonePlacement(p))
	}
	for i, m := range st.GetMembers() {
		if e := ValidateMember(m); e != nil {
			return nil, snapshotError(fmt.Sprintf("members[%d].", i), &pb.CommandError{Field: strings.TrimPrefix(e.GetField(), "member."), Message: e.GetMessage()})
		}
		if _, dup := s.master.members.Get(m.GetName()); dup {
			return nil, fmt.Errorf("%w: members[%d].name: duplicate member %q", ErrInvalidSnapshot, i, m.GetName())
		}
		s.master.members.Set(m.GetName(), cloneMember(m))
	}
	if err := s.master.restoreAuth(st.GetKeys(), nil, rev); err != nil {
		return nil, err
	}
	if id := st.GetClusterId(); id != "" {
		if err := clusterid.Validate(id); err != nil {
			return nil, fmt.Errorf("%w: cluster_id: %v", ErrInvalidSnapshot, err)
		}
		s.master.clusterID = id
	}
	s.publish(rev, newTopology(cfg.GetRegions(), cfg.GetLatencies(), cfg.GetDefaultCell()))
	return s, nil
}

// FromSnapshot is FromState plus the breaker and health state of every
// endpoint, the nonces and the edges' last report batches, as
// View.Snapshot wrote them. An endpoint state naming an
// endpoint the config lacks, named twice, stamped above the revision or
// undecodable is refused with an error wrapping ErrInvalidSnapshot.
func FromSnapshot(snap *pb.Snapshot) (*Store, error) {
	if err := restorable(snap); err != nil {
		return nil, err
	}
	s, err := FromState(snap.GetState())
	if err != nil {
		return nil, err
	}
	v := s.cur.Load()
	if err := s.master.restoreEndpointStates(snap.GetEndpointStates(), v.revision); err != nil {
		return nil, err
	}
	if err := s.master.restoreAuth(nil, snap.GetNonces(), v.revision); err != nil {
		return nil, err
	}
	if err := s.master.restoreReports(snap.GetReportBatches()); err != nil {
		return nil, err
	}
	s.master.opsApplied = slices.Clone(snap.GetOpsApplied())
	s.publish(v.revision, v.topo)
	return s, nil
}

// Restore replaces the whole state with snap's, built as FromSnapshot builds
// it and swapped in with one atomic store (Consul's restore: a fresh state,
// never a patched one); Views taken before keep the state they captured.
// A snapshot FromSnapshot refuses leaves the state as it was and returns
// its error. A snapshot whose state applied an op this binary cannot apply
// halts the store instead (as Apply does on such an op) and returns the *HaltError: its state
// may hold what this binary cannot represent. Call it from the goroutine
// that calls Apply.
func (s *Store) Restore(snap *pb.Snapshot) error {
	fresh, err := FromSnapshot(snap)
	if h := (*HaltError)(nil); errors.As(err, &h) {
		s.halt(h)
		return h
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.master = fresh.master
	s.cur.Store(fresh.cur.Load())
	return nil
}

// restorable refuses, with a *HaltError, a snapshot whose state has applied
// a non-ignorable op this binary does not apply: its state may hold what
// this binary cannot represent (a newer binary's snapshot, kept on disk
// across a downgrade or sent by a newer leader).
func restorable(snap *pb.Snapshot) error {
	for i, n := range snap.GetOpsApplied() {
		switch {
		case n < firstOpNumber || (i > 0 && n <= snap.GetOpsApplied()[i-1]):
			return fmt.Errorf("%w: ops_applied[%d] = %d: want ascending op numbers from %d", ErrInvalidSnapshot, i, n, firstOpNumber)
		case ops.specs[protoreflect.FieldNumber(n)] == nil:
			return &HaltError{Index: snap.GetAppliedIndex(), Op: opNamed(protoreflect.FieldNumber(n)), Snapshot: true}
		}
	}
	return nil
}

func checkStamps(path string, create, mod, rev uint64) error {
	if create == 0 || create > mod || mod > rev {
		return fmt.Errorf("%w: %s: stamps create_revision=%d mod_revision=%d do not fit revision %d (want 0 < create <= mod <= revision)",
			ErrInvalidSnapshot, path, create, mod, rev)
	}
	return nil
}

// publish makes master, at revision, the version readers see. The caller holds mu
// (or owns s exclusively).
func (s *Store) publish(revision uint64, topo *topology) {
	s.cur.Store(&version{revision: revision, topo: topo, t: s.master.isoCopy()})
}

// View is the state at one revision, captured in O(1) by Freeze. It stays
// the same however the store moves on (a later Apply, or a Restore), and is
// safe for concurrent use. Every read method answers from that one
// revision, which Revision names: an answer built from several reads of one
// View, with its Revision, is consistent. Objects returned by reads are
// copies owned by the caller. The zero
// View is not usable; take one from Freeze.
type View struct{ *version }

// Freeze captures the current version without copying it: the view a
// handler answers one request from, or what raft's FSM.Snapshot hands to
// another goroutine for the O(n) copy (FSMSnapshot.Persist).
func (s *Store) Freeze() View { return View{s.cur.Load()} }

// Revision is the raft index of the last command that changed the state
// when it was captured (0 for an empty store). Views taken later from the
// same store never have a lower one.
func (v View) Revision() uint64 { return v.revision }

// State returns a deep copy of the captured state: the config as Config
// orders it, members by name, and the breaker and health statuses that ever
// changed, by endpoint. It is what a watch reset sends.
func (v View) State() *pb.State {
	bs, hs := v.statuses()
	return &pb.State{Revision: v.revision, Config: v.config(), Members: v.members(), Breakers: bs, Health: hs, Keys: v.keys(), ClusterId: v.t.clusterID}
}

// Snapshot returns the raft snapshot payload: State plus the complete
// breaker and health state of every endpoint (counters, windows, per-edge
// observations), the nonces and the edges' last report batches, which
// FromSnapshot restores exactly. applied is the raft
// index the caller processed last.
func (v View) Snapshot(applied uint64) (*pb.Snapshot, error) {
	eps, err := v.endpointStates()
	if err != nil {
		return nil, err
	}
	return &pb.Snapshot{
		AppliedIndex: applied, State: v.State(), EndpointStates: eps, Nonces: v.nonceRecords(),
		ReportBatches: v.reportRecords(), OpsApplied: slices.Clone(v.t.opsApplied),
	}, nil
}

// Config returns a deep copy of the routing config: regions and latencies
// as given, cells ordered by id, placements by key, every cell and
// placement with its stamps.
func (v View) Config() *pb.RoutingConfig { return v.config() }

func (v *version) config() *pb.RoutingConfig {
	cfg := &pb.RoutingConfig{
		Regions:     cloneRegions(v.topo.regions),
		Latencies:   cloneLatencies(v.topo.latencies),
		DefaultCell: v.topo.defaultCell,
		Cells:       v.cells(),
	}
	if n := v.t.placements.Len(); n > 0 {
		cfg.Placements = make([]*pb.Placement, 0, n)
		v.t.placements.Scan(func(_ string, p *pb.Placement) bool {
			cfg.Placements = append(cfg.Placements, clonePlacement(p))
			return true
		})
	}
	return cfg
}

func (v *version) cells() []*pb.Cell {
	out := make([]*pb.Cell, 0, v.t.cells.Len())
	v.t.cells.Scan(func(_ string, c *pb.Cell) bool {
		out = append(out, cloneCell(c))
		return true
	})
	return out
}

func (v *version) members() []*pb.Member {
	out := make([]*pb.Member, 0, v.t.members.Len())
	v.t.members.Scan(func(_ string, m *pb.Member) bool {
		out = append(out, cloneMember(m))
		return true
	})
	return out
}

// Cell returns a copy of the cell with this id.
func (v View) Cell(id string) (*pb.Cell, bool) { return lookup(v.t.cells, id, cloneCell) }

// Cells returns copies of every cell, ordered by id.
func (v View) Cells() []*pb.Cell { return v.cells() }

// Placement returns a copy of the placement for key.
func (v View) Placement(key string) (*pb.Placement, bool) {
	return lookup(v.t.placements, key, clonePlacement)
}

// Placements pages through the placements whose key starts with prefix, in key
// order, starting after the key startAfter ("" for the first page). It returns
// at most limit placements (limit <= 0: all of them), the key to pass as
// startAfter for the next page ("" when this page is the last). It costs
// O(log n + limit): the placements are kept sorted. Successive pages read
// from successive views may come from different revisions.
func (v View) Placements(prefix, startAfter string, limit int) (ps []*pb.Placement, next string) {
	pivot := max(prefix, startAfter)
	v.t.placements.Ascend(pivot, func(k string, p *pb.Placement) bool {
		if k == startAfter {
			return true
		}
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		if limit > 0 && len(ps) == limit {
			next = ps[len(ps)-1].GetKey()
			return false
		}
		ps = append(ps, clonePlacement(p))
		return true
	})
	return ps, next
}

// Members returns copies of every member, ordered by name.
func (v View) Members() []*pb.Member { return v.members() }

// Member returns a copy of the member with this name.
func (v View) Member(name string) (*pb.Member, bool) {
	return lookup(v.t.members, name, cloneMember)
}

// lookup returns the caller's own copy of the object stored under key.
func lookup[V any](m *btree.Map[string, *V], key string, clone func(*V) *V) (*V, bool) {
	if v, ok := m.Get(key); ok {
		return clone(v), true
	}
	return nil, false
}
