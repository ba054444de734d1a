package raftstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Applier is the replicated state machine the FSM drives (state.Store in a
// coordinator; Consul's FSM gets its state store the same way). raft calls
// it from one goroutine. Apply applies the command committed at index and
// returns its result and its change (nil when nothing watchable changed);
// Freeze captures the current state in O(1); Restore replaces the whole
// state with a snapshot's, and on a snapshot whose state applied an op this
// binary cannot apply, halts and returns a *state.HaltError; Halted is nil
// until the state machine halted (state.Store.Apply), then why.
type Applier interface {
	Apply(index uint64, cmd *pb.Command) (*pb.CommandResult, *pb.Change)
	Freeze() state.View
	Restore(snap *pb.Snapshot) error
	Halted() error
}

// Publisher receives what the FSM applied, in log order, on raft's apply
// goroutine, and must not block it (watch.Hub in a coordinator): every
// change, a reset to the restored revision after a snapshot restore, and
// the cluster id once this member knows it.
type Publisher interface {
	Publish(change *pb.Change)
	Reset(revision uint64)
	SetClusterID(id string)
}

// fsm adapts the Applier to raft.FSM. Apply decodes the envelope and hands
// it to the applier; the resulting change goes to the publisher. Restore
// has the applier swap in the snapshot's state (snapshots swap, never
// patch), and resets the publisher so every watcher starts over from it.
//
// An applier that halted (a committed command whose op this binary cannot
// apply, see state.Store.Apply, or a snapshot whose state applied one)
// stops the FSM: applied no longer advances,
// Snapshot and Restore refuse, and halted is closed, so that nothing past
// the last applied entry is ever persisted as state and a restart with a
// binary that knows the op replays the log from the last snapshot.
type fsm struct {
	state   Applier
	pub     Publisher
	applied *indexNotifier // raft index of the last command or configuration the FSM processed
	cluster *clusterIdentity
	log     *slog.Logger

	// halted is closed when the store halts; haltSeen and skipped are
	// touched only by raft's FSM goroutine.
	halted   chan struct{}
	haltSeen bool
	skipped  map[protoreflect.FieldNumber]bool // ignorable unknown ops already logged
}

func newFSM(sm Applier, pub Publisher, cluster *clusterIdentity, log *slog.Logger) *fsm {
	return &fsm{state: sm, pub: pub, applied: newIndexNotifier(0), cluster: cluster, log: log, halted: make(chan struct{}), skipped: map[protoreflect.FieldNumber]bool{}}
}

// noteCluster hands a newly learnt cluster id to the publisher (after the
// change that carries it was published, so watchers of the same cluster see
// it in order before any reset decision).
func (f *fsm) noteCluster() {
	if f.cluster.learn(f.state.Freeze().ClusterID()) {
		f.pub.SetClusterID(f.cluster.get())
	}
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

// Apply is called by raft, on one goroutine, for each committed command.
func (f *fsm) Apply(l *raft.Log) any {
	cmd := &pb.Command{}
	if err := proto.Unmarshal(l.Data, cmd); err != nil && f.haltError() == nil {
		// A committed entry that does not decode means replicas would diverge.
		// (A halted store applies nothing, decoded or not.)
		panic(fmt.Sprintf("raftstore: undecodable command at index %d: %v", l.Index, err))
	}
	res, change := f.state.Apply(l.Index, cmd)
	if err := f.state.Halted(); err != nil {
		f.noteHalt(err)
		return res
	}
	if res.GetSkipped() {
		f.noteSkipped(cmd, l.Index)
	}
	if change != nil {
		f.pub.Publish(change)
		f.noteCluster()
	}
	f.applied.advance(l.Index)
	return res
}

// noteHalt logs the halt and wakes its watchers, once.
func (f *fsm) noteHalt(err error) {
	if f.haltSeen {
		return
	}
	f.haltSeen = true
	applied, _ := f.applied.current()
	f.log.Error("state machine halted: upgrade this member's binary and restart it", "error", err, "applied_index", applied)
	close(f.halted)
}

// noteSkipped logs, once per op, that ignorable commands of an op this
// binary does not know are being skipped.
func (f *fsm) noteSkipped(cmd *pb.Command, index uint64) {
	op := state.OpOf(cmd)
	if f.skipped[op.Number] {
		return
	}
	f.skipped[op.Number] = true
	f.log.Warn("skipping ignorable commands of an op this binary does not know (logged once per op); upgrade this member to apply them",
		"op", op.Number, "index", index)
}

// haltError is the applier's halt, or nil while the FSM applies.
func (f *fsm) haltError() error { return f.state.Halted() }

// StoreConfiguration is called for committed configuration entries. The state
// does not hold the raft configuration (it holds member addresses, written by
// commands), but processing the entry still counts as applied for read-index.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) {
	if f.haltError() != nil {
		return
	}
	f.applied.advance(index)
}

// Snapshot captures the state at the current revision in O(1) (the store is
// copy-on-write); building and marshalling the proto happens in Persist, off
// the apply goroutine.
//
// A halted FSM refuses: raft would record the snapshot as covering every
// entry it handed the FSM, the unapplied ones included, and then compact
// them away.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.haltError(); err != nil {
		return nil, fmt.Errorf("raftstore: no snapshot while the state machine is halted: %w", err)
	}
	applied, _ := f.applied.current()
	return &fsmSnapshot{frozen: f.state.Freeze(), applied: applied}, nil
}

// Restore replaces the state with a snapshot's. A halted FSM refuses: the
// snapshot would hold effects of the op this binary cannot apply, which it
// would drop or misread. A snapshot whose state applied such an op
// (Snapshot.ops_applied) halts the FSM instead of being restored.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.haltError(); err != nil {
		return fmt.Errorf("raftstore: no restore while the state machine is halted: %w", err)
	}
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	snap := &pb.Snapshot{}
	if err := proto.Unmarshal(data, snap); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	err = f.state.Restore(snap)
	if h := (*state.HaltError)(nil); errors.As(err, &h) {
		// The snapshot's state applied an op this binary does not: the
		// applier halted rather than serve a state it may not represent.
		// Raft counts the snapshot as restored, but the halted state
		// applies nothing after it, so no state from past the halt is
		// served or persisted.
		f.noteHalt(h)
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	rev := f.state.Freeze().Revision()
	f.pub.Reset(rev)
	f.noteCluster()
	f.applied.advance(max(snap.GetAppliedIndex(), rev))
	return nil
}

type fsmSnapshot struct {
	frozen  state.View
	applied uint64
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	snap, err := s.frozen.Snapshot(s.applied)
	if err != nil {
		sink.Cancel()
		return err
	}
	data, err := proto.Marshal(snap)
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("encode snapshot: %w", err)
	}
	if _, err := sink.Write(data); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
