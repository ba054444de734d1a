package watch

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
	"google.golang.org/protobuf/proto"
)

const waitFor = 10 * time.Second // deadline for anything the tests wait on

// fakeStore stands in for the state store: its snapshot is a State at the
// revision last published, and it counts snapshot calls.
type fakeStore struct {
	rev     atomic.Uint64
	calls   atomic.Int64
	cluster atomic.Pointer[string]
}

func (f *fakeStore) snapshot() *pb.State {
	f.calls.Add(1)
	st := &pb.State{Revision: f.rev.Load()}
	if id := f.cluster.Load(); id != nil {
		st.ClusterId = *id
	}
	return st
}

// setCluster gives the fake store and the hub cluster id, the way the FSM does.
func (f *fakeStore) setCluster(h *Hub, id string) {
	f.cluster.Store(&id)
	h.SetClusterID(id)
}

// publish applies revision rev to the fake store, then publishes it, the way
// the FSM does.
func (f *fakeStore) publish(h *Hub, revs ...uint64) {
	for _, rev := range revs {
		f.rev.Store(rev)
		h.Publish(&pb.Change{Revision: rev, Events: []*pb.Event{
			{Kind: &pb.Event_DeletePlacement{DeletePlacement: "k"}},
		}})
	}
}

func newTestHub(t *testing.T, opts Options, rev uint64) (*Hub, *fakeStore) {
	t.Helper()
	if opts.ProgressInterval == 0 {
		opts.ProgressInterval = time.Hour // tests that want progress set it
	}
	f := &fakeStore{}
	f.rev.Store(rev)
	return NewHub(opts, f.snapshot, rev), f
}

// watcher is one Serve loop whose messages arrive on msgs. With an
// unbuffered msgs, send blocks until the test reads: a stalled edge.
type watcher struct {
	msgs   chan *pb.WatchResponse
	cancel context.CancelFunc
	done   chan error
}

func watch(t *testing.T, h *Hub, from uint64, buffer int) *watcher {
	t.Helper()
	return watchCluster(t, h, from, "", buffer)
}

// watchCluster is watch for a watcher whose state came from cluster.
func watchCluster(t *testing.T, h *Hub, from uint64, cluster string, buffer int) *watcher {
	t.Helper()
	return watchWith(t, h, &pb.WatchRequest{FromRevision: from, ClusterId: cluster}, buffer)
}

// watchWith starts a watcher with req.
func watchWith(t *testing.T, h *Hub, req *pb.WatchRequest, buffer int) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{msgs: make(chan *pb.WatchResponse, buffer), cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- h.Serve(ctx, req, func(m *pb.WatchResponse, wire []byte) error {
			if wire != nil {
				// The shared encoding must be the message.
				var got pb.WatchResponse
				if err := proto.Unmarshal(wire, &got); err != nil || !proto.Equal(&got, m) {
					t.Errorf("shared encoding of %v decodes to %v (%v)", m, &got, err)
				}
			}
			select {
			case w.msgs <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

func (w *watcher) next(t *testing.T) *pb.WatchResponse {
	t.Helper()
	select {
	case m := <-w.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message before the deadline")
		return nil
	}
}

// nextData returns the next message that is not progress.
func (w *watcher) nextData(t *testing.T) *pb.WatchResponse {
	t.Helper()
	for {
		if m := w.next(t); m.GetKind() != nil {
			if _, ok := m.GetKind().(*pb.WatchResponse_ProgressRevision); !ok {
				return m
			}
		}
	}
}

// expectChanges reads until it has seen the changes revs, in order, and
// fails on a reset or any other change.
func (w *watcher) expectChanges(t *testing.T, revs ...uint64) {
	t.Helper()
	var got []uint64
	for len(got) < len(revs) {
		m := w.nextData(t)
		if m.GetChanges() == nil {
			t.Fatalf("got %v after changes %v; want changes %v", m, got, revs)
		}
		for _, ch := range m.GetChanges().GetChanges() {
			got = append(got, ch.GetRevision())
		}
	}
	for i := range revs {
		if i >= len(got) || got[i] != revs[i] || len(got) != len(revs) {
			t.Fatalf("got changes %v; want %v", got, revs)
		}
	}
}

// expectReset reads the next non-progress message and requires a reset at rev.
func (w *watcher) expectReset(t *testing.T, rev uint64) {
	t.Helper()
	m := w.nextData(t)
	if m.GetReset_() == nil || m.GetReset_().GetRevision() != rev {
		t.Fatalf("got %v; want a reset at %d", m, rev)
	}
}

// waitWatchers polls until the hub serves n streams.
func waitWatchers(t *testing.T, h *Hub, n int) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() error {
		if got := h.Watchers(); got != n {
			return fmt.Errorf("%d watchers; want %d", got, n)
		}
		return nil
	})
}
