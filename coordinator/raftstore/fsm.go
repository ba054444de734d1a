package raftstore

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/coordinator/state"
	"github.com/edgecell/edgecell/coordinator/watch"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// fsm adapts the state store to raft.FSM. Apply decodes the envelope and hands
// it to the store; the resulting change goes to the watch hub, which never
// blocks. Restore builds a fresh store and swaps it in (snapshots swap, never
// patch), and resets the hub so every watcher starts over from the new state.
type fsm struct {
	store   atomic.Pointer[state.Store]
	hub     *watch.Hub
	applied *indexNotifier // raft index of the last command or configuration the FSM processed
	cluster *clusterIdentity
}

// noteCluster hands a newly learnt cluster id to the hub (after the change
// that carries it was published, so watchers of the same cluster see it in
// order before any reset decision).
func (f *fsm) noteCluster() {
	if f.cluster.learn(f.store.Load().ClusterID()) {
		f.hub.SetClusterID(f.cluster.get())
	}
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

// Apply is called by raft, on one goroutine, for each committed command.
func (f *fsm) Apply(l *raft.Log) any {
	cmd := &pb.Command{}
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		// A committed entry that does not decode means replicas would diverge.
		panic(fmt.Sprintf("raftstore: undecodable command at index %d: %v", l.Index, err))
	}
	res, change := f.store.Load().Apply(l.Index, cmd)
	if change != nil {
		f.hub.Publish(change)
		f.noteCluster()
	}
	f.applied.advance(l.Index)
	return res
}

// StoreConfiguration is called for committed configuration entries. The state
// does not hold the raft configuration (it holds member addresses, written by
// commands), but processing the entry still counts as applied for read-index.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.applied.advance(index)
}

// Snapshot captures the state at the current revision in O(1) (the store is
// copy-on-write); building and marshalling the proto happens in Persist, off
// the apply goroutine.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	applied, _ := f.applied.current()
	return &fsmSnapshot{frozen: f.store.Load().Freeze(), applied: applied}, nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	snap := &pb.Snapshot{}
	if err := proto.Unmarshal(data, snap); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	fresh, err := state.FromSnapshot(snap)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.store.Store(fresh)
	f.hub.Reset(fresh.Revision())
	f.noteCluster()
	f.applied.advance(max(snap.GetAppliedIndex(), fresh.Revision()))
	return nil
}

type fsmSnapshot struct {
	frozen  state.Frozen
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
