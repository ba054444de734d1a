package watch

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/protobuf/proto"
)

// Defaults for zero Options fields.
const (
	DefaultBufferSize       = 10000
	DefaultProgressInterval = 5 * time.Second
	DefaultMaxBatch         = 256
)

// Options tune a Hub. Zero fields take the defaults above.
type Options struct {
	// BufferSize is how many changes the hub keeps for watchers to catch up
	// from; a watcher further behind gets a reset.
	BufferSize int
	// ProgressInterval is how long a stream may stay silent: an idle watcher
	// gets a progress message this often, so edges can tell a quiet
	// coordinator from a dead one.
	ProgressInterval time.Duration
	// MaxBatch is the most changes sent in one message.
	MaxBatch int
}

func (o Options) withDefaults() Options {
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	return o
}

// Hub publishes changes to any number of watch streams. Publish and Reset
// must be called from one goroutine (the FSM's); every method is safe
// concurrently with the others.
type Hub struct {
	opts     Options
	snapshot func() *pb.State

	mu    sync.Mutex   // guards the fields below; held only for O(log n + MaxBatch) steps
	ring  []*pb.Change // the last changes, oldest at head; len(ring) == BufferSize
	sizes []int        // the encoded size of each change in ring, same index
	// singles and wires are, for each change in ring of at most PartBytes,
	// the message carrying it alone and that message encoded: what every
	// caught-up watcher is sent, built and encoded once for all of them.
	singles []*pb.WatchResponse
	wires   [][]byte
	head    int           // index of the oldest change in ring
	n       int           // changes held
	base    uint64        // every change with revision > base is in ring (or not yet published)
	rev     uint64        // latest published or reset revision
	epoch   uint64        // bumped by Reset: a cached reset state from before it is stale
	wake    chan struct{} // closed and replaced by Publish, Reset and SetClusterID
	// cluster is the id of the cluster whose history the hub serves; "" while
	// this member does not know it.
	cluster string

	watchers atomic.Int64

	snapMu    sync.Mutex          // serialises snapshot() so that watchers resetting together share one copy
	snapState *pb.State           // the last state snapshot() returned
	snapEpoch uint64              // epoch snapState was taken in
	snapParts []*pb.WatchResponse // snapState cut in parts, once a watcher asked
}

// NewHub returns a hub whose store is at revision; the changes published
// next must be above it. snapshot must return the store's current state, at
// least as new as every change already published (apply before publish); it
// is called outside any hub lock, by watchers that need a reset, and the
// result is shared between them.
func NewHub(opts Options, snapshot func() *pb.State, revision uint64) *Hub {
	opts = opts.withDefaults()
	return &Hub{
		opts:     opts,
		snapshot: snapshot,
		ring:     make([]*pb.Change, opts.BufferSize),
		sizes:    make([]int, opts.BufferSize),
		singles:  make([]*pb.WatchResponse, opts.BufferSize),
		wires:    make([][]byte, opts.BufferSize),
		base:     revision,
		rev:      revision,
		wake:     make(chan struct{}),
	}
}

// Publish hands a committed change to the watchers and returns at once: it
// is O(1), never blocks on a watcher, and takes ownership of ch, which nobody
// may modify afterwards. A nil ch (a command that changed nothing) is
// ignored. ch.Revision must be above every revision published or reset
// before; Publish panics otherwise, since watchers would receive a history
// that did not happen.
func (h *Hub) Publish(ch *pb.Change) {
	if ch == nil {
		return
	}
	size := proto.Size(ch) // once, outside the lock: batches are cut by bytes
	var single *pb.WatchResponse
	var wire []byte
	if size <= PartBytes {
		single = &pb.WatchResponse{Kind: &pb.WatchResponse_Changes{Changes: &pb.ChangeBatch{Changes: []*pb.Change{ch}}}}
		wire, _ = proto.Marshal(single) // cannot fail: ch came from the state machine
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch.GetRevision() <= h.rev {
		panic(fmt.Sprintf("watch: publish of revision %d after revision %d", ch.GetRevision(), h.rev))
	}
	if h.n == len(h.ring) {
		h.base = h.ring[h.head].GetRevision()
		h.ring[h.head], h.singles[h.head], h.wires[h.head] = nil, nil, nil
		h.head = (h.head + 1) % len(h.ring)
		h.n--
	}
	h.ring[(h.head+h.n)%len(h.ring)] = ch
	h.sizes[(h.head+h.n)%len(h.ring)] = size
	h.singles[(h.head+h.n)%len(h.ring)], h.wires[(h.head+h.n)%len(h.ring)] = single, wire
	h.n++
	h.rev = ch.GetRevision()
	h.broadcast()
}

// Reset drops the buffer after the store was replaced (raft snapshot
// restore) and sets the hub's revision to the new store's. Every active
// watcher's next message is a reset with the new state, except a watcher
// already past it, which is never moved backwards: it waits, like any watcher
// ahead of this member, for the changes after its own revision. Reset does not
// wait for watchers.
func (h *Hub) Reset(revision uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.ring)
	clear(h.singles)
	clear(h.wires)
	h.head, h.n = 0, 0
	h.base, h.rev = revision, revision
	h.epoch++
	h.broadcast()
}

// SetClusterID tells the hub the id of the cluster its history belongs to
// (state.View.ClusterID, or the member's persisted id before the state has
// it). Watchers that hold another cluster's state get a reset; watchers that
// named a cluster while the hub knew none are served from now on.
func (h *Hub) SetClusterID(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id == h.cluster {
		return
	}
	h.cluster = id
	h.broadcast()
}

// ClusterID is the id SetClusterID set last.
func (h *Hub) ClusterID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cluster
}

// broadcast wakes every waiting watcher. The caller holds mu.
func (h *Hub) broadcast() {
	close(h.wake)
	h.wake = make(chan struct{})
}

// Revision is the latest revision published or reset.
func (h *Hub) Revision() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Watchers is the number of streams being served.
func (h *Hub) Watchers() int { return int(h.watchers.Load()) }

// at returns the i-th oldest change held. The caller holds mu.
func (h *Hub) at(i int) *pb.Change { return h.ring[(h.head+i)%len(h.ring)] }

// resetState returns a state to reset a watcher to: the cached one when no
// change was published since it was taken, else a fresh snapshot().
func (h *Hub) resetState() *pb.State {
	h.snapMu.Lock()
	defer h.snapMu.Unlock()
	h.mu.Lock()
	rev, epoch := h.rev, h.epoch
	h.mu.Unlock()
	if st := h.snapState; st != nil && h.snapEpoch == epoch && st.GetRevision() >= rev {
		return st
	}
	h.snapState, h.snapEpoch, h.snapParts = h.snapshot(), epoch, nil
	return h.snapState
}

// partsOf returns st cut in parts (cutReset), cut once and shared by every
// watcher when st is the cached reset state.
func (h *Hub) partsOf(st *pb.State) []*pb.WatchResponse {
	h.snapMu.Lock()
	defer h.snapMu.Unlock()
	if st != h.snapState {
		return cutReset(st)
	}
	if h.snapParts == nil {
		h.snapParts = cutReset(st)
	}
	return h.snapParts
}
