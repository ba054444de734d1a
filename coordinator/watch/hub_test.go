package watch

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestStartingPoints(t *testing.T) {
	tests := []struct {
		name      string
		buffer    int
		from      uint64
		wantReset uint64   // 0: no reset expected
		want      []uint64 // changes expected after the reset, if any
	}{
		{"resume inside the buffer", 10, 2, 0, []uint64{3, 4, 5, 6, 7, 8, 9, 10}},
		{"resume at the buffer's oldest edge", 3, 7, 0, []uint64{8, 9, 10}},
		{"one change older than the buffer", 3, 6, 10, nil},
		{"far behind the buffer", 3, 1, 10, nil},
		{"from zero", 100, 0, 10, nil},
		{"up to date", 10, 10, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, f := newTestHub(t, Options{BufferSize: tc.buffer}, 0)
			f.publish(h, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
			w := watch(t, h, tc.from, 100)
			if tc.wantReset != 0 {
				w.expectReset(t, tc.wantReset)
			}
			w.expectChanges(t, tc.want...)
			// Whatever the start, the stream then follows new changes.
			f.publish(h, 11, 12)
			w.expectChanges(t, 11, 12)
		})
	}
}

func TestUpToDateStreamStartsWithProgress(t *testing.T) {
	h, _ := newTestHub(t, Options{}, 42)
	w := watch(t, h, 42, 10)
	if m := w.next(t); m.GetProgressRevision() != 42 {
		t.Fatalf("first message %v; want progress 42", m)
	}
}

func TestBatchesRespectMaxBatch(t *testing.T) {
	h, f := newTestHub(t, Options{MaxBatch: 2}, 100)
	f.publish(h, 101, 102, 103, 104, 105)
	w := watch(t, h, 100, 10)
	var sizes []int
	for total := 0; total < 5; {
		n := len(w.nextData(t).GetChanges().GetChanges())
		if n == 0 || n > 2 {
			t.Fatalf("batch of %d changes; want 1..2", n)
		}
		sizes = append(sizes, n)
		total += n
	}
	if len(sizes) != 3 {
		t.Fatalf("batch sizes %v; want 2, 2, 1", sizes)
	}
}

// TestStalledWatcherDoesNotHoldBackOthers: one edge stops reading; Publish
// keeps returning, the other edges receive every change while it is stuck,
// and when it reads again the buffer has moved on, so it gets a reset.
func TestStalledWatcherDoesNotHoldBackOthers(t *testing.T) {
	h, f := newTestHub(t, Options{BufferSize: 4}, 10)
	stalled := watch(t, h, 10, 0) // unbuffered: its send blocks until the test reads
	var others []*watcher
	for i := 0; i < 3; i++ {
		others = append(others, watch(t, h, 10, 100))
	}
	waitWatchers(t, h, 4)
	for rev := uint64(11); rev <= 20; rev++ {
		f.publish(h, rev) // must not block on the stalled watcher
		for _, w := range others {
			w.expectChanges(t, rev)
		}
	}
	// Released: it finishes the send it was stuck in (its opening progress,
	// or change 11 if that was published first), then, being older than the
	// buffer, gets the state at 20.
	m := stalled.next(t)
	if chs := m.GetChanges().GetChanges(); m.GetProgressRevision() != 10 && (len(chs) != 1 || chs[0].GetRevision() != 11) {
		t.Fatalf("stalled watcher's first message %v; want progress 10 or change 11", m)
	}
	stalled.expectReset(t, 20)
	f.publish(h, 21)
	stalled.expectChanges(t, 21)
	for _, w := range others {
		w.expectChanges(t, 21)
	}
}

func TestHubResetForcesResets(t *testing.T) {
	h, f := newTestHub(t, Options{}, 0)
	f.publish(h, 1, 2, 3, 4, 5)
	behind := watch(t, h, 3, 100)
	current := watch(t, h, 5, 100)
	ahead := watch(t, h, 60, 100) // got 60 from a member that is further along
	behind.expectChanges(t, 4, 5)
	waitWatchers(t, h, 3)

	// A snapshot restore replaced the store with its state at 50.
	f.rev.Store(50)
	h.Reset(50)
	if h.Revision() != 50 {
		t.Fatalf("Revision() = %d after Reset(50)", h.Revision())
	}
	behind.expectReset(t, 50)
	current.expectReset(t, 50)
	// A new stream resuming from before the reset cannot be served from the
	// (dropped) buffer either.
	late := watch(t, h, 5, 100)
	late.expectReset(t, 50)

	revs := []uint64{51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61}
	f.publish(h, revs...)
	behind.expectChanges(t, revs...)
	current.expectChanges(t, revs...)
	late.expectChanges(t, revs...)
	// The watcher ahead was never moved back to 50, and gets only what it lacks.
	ahead.expectChanges(t, 61)
}

func TestWatcherAheadWaits(t *testing.T) {
	h, f := newTestHub(t, Options{BufferSize: 100}, 5)
	w := watch(t, h, 8, 100)
	if m := w.next(t); m.GetProgressRevision() != 8 {
		t.Fatalf("first message %v; want progress 8 (the watcher's own revision)", m)
	}
	f.publish(h, 6, 7, 8, 9)
	w.expectChanges(t, 9) // 6..8 were never sent, nor a reset

	// When this member catches up by more than its buffer, the watcher gets a
	// reset, but only forward.
	h2, f2 := newTestHub(t, Options{BufferSize: 2}, 5)
	w2 := watch(t, h2, 8, 100)
	f2.publish(h2, 6, 7, 8, 9, 10, 11, 12)
	m := w2.nextData(t)
	if st := m.GetReset_(); st != nil && st.GetRevision() < 8 {
		t.Fatalf("reset to %d moved the watcher back from 8", st.GetRevision())
	}
	f2.publish(h2, 13)
	w2.expectChanges(t, 13)
}

func TestProgressWhileIdle(t *testing.T) {
	h, f := newTestHub(t, Options{ProgressInterval: 10 * time.Millisecond}, 7)
	w := watch(t, h, 7, 100)
	for i := 0; i < 3; i++ { // the opening one, then two periodic ones
		if m := w.next(t); m.GetProgressRevision() != 7 {
			t.Fatalf("message %d: %v; want progress 7", i, m)
		}
	}
	f.publish(h, 8)
	w.expectChanges(t, 8)
	deadline := time.Now().Add(waitFor)
	for {
		if m := w.next(t); m.GetProgressRevision() == 8 {
			break
		} else if m.GetChanges() != nil || time.Now().After(deadline) {
			t.Fatalf("got %v; want progress 8", m)
		}
	}
}

func TestResettingWatchersShareOneSnapshot(t *testing.T) {
	h, f := newTestHub(t, Options{}, 0)
	f.publish(h, 1, 2, 3)
	var ws []*watcher
	for i := 0; i < 10; i++ {
		ws = append(ws, watch(t, h, 0, 10))
	}
	for _, w := range ws {
		w.expectReset(t, 3)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("snapshot() called %d times for 10 resets at one revision; want 1", n)
	}
	f.publish(h, 4)
	watch(t, h, 0, 10).expectReset(t, 4) // a newer revision needs a new snapshot
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("snapshot() called %d times; want 2", n)
	}
}

func TestServeEnds(t *testing.T) {
	h, f := newTestHub(t, Options{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- h.Serve(ctx, &pb.WatchRequest{FromRevision: 1}, func(*pb.WatchResponse, []byte) error { return nil })
	}()
	waitWatchers(t, h, 1)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve returned %v; want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Serve did not return after cancel")
	}
	waitWatchers(t, h, 0)

	broken := errors.New("stream broken")
	if err := h.Serve(context.Background(), &pb.WatchRequest{FromRevision: 1}, func(*pb.WatchResponse, []byte) error { return broken }); !errors.Is(err, broken) {
		t.Fatalf("Serve returned %v; want the send error of the opening progress", err)
	}
	f.publish(h, 2)
	if err := h.Serve(context.Background(), &pb.WatchRequest{FromRevision: 1}, func(*pb.WatchResponse, []byte) error { return broken }); !errors.Is(err, broken) {
		t.Fatalf("Serve returned %v; want the send error of a batch", err)
	}
	if err := h.Serve(context.Background(), &pb.WatchRequest{}, func(*pb.WatchResponse, []byte) error { return broken }); !errors.Is(err, broken) {
		t.Fatalf("Serve returned %v; want the send error of a reset", err)
	}
	waitWatchers(t, h, 0)
}

func TestPublish(t *testing.T) {
	h, f := newTestHub(t, Options{}, 5)
	h.Publish(nil) // a command that changed nothing
	if h.Revision() != 5 {
		t.Fatalf("Publish(nil) moved the revision to %d", h.Revision())
	}
	f.publish(h, 6)
	if h.Revision() != 6 {
		t.Fatalf("Revision() = %d; want 6", h.Revision())
	}
	for _, rev := range []uint64{6, 3} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("Publish of revision %d after 6 did not panic", rev)
				}
			}()
			h.Publish(&pb.Change{Revision: rev})
		}()
	}
}

// A watcher whose state came from another cluster (a rebuilt one reuses the
// same revisions) is reset at once, even when its revision is ahead of the
// hub's, which for the same cluster means "wait for me to catch up".
func TestWatcherOfAnotherClusterIsReset(t *testing.T) {
	h, f := newTestHub(t, Options{}, 0)
	f.setCluster(h, "new")
	f.publish(h, 1, 2, 3)

	w := watchCluster(t, h, 50, "old", 4)
	m := w.nextData(t)
	if st := m.GetReset_(); st == nil || st.GetRevision() != 3 || st.GetClusterId() != "new" {
		t.Fatalf("watcher of cluster old at 50: got %v, want a reset to cluster new at 3", m)
	}
	f.publish(h, 4)
	w.expectChanges(t, 4)
}

func TestWatcherOfTheSameClusterAheadIsNotReset(t *testing.T) {
	h, f := newTestHub(t, Options{}, 0)
	f.setCluster(h, "one")
	f.publish(h, 1, 2, 3)

	w := watchCluster(t, h, 5, "one", 4)
	if m := w.next(t); m.GetProgressRevision() != 5 {
		t.Fatalf("watcher ahead of its own cluster: got %v, want progress at its revision 5", m)
	}
	f.publish(h, 4, 5, 6)
	w.expectChanges(t, 6)
}

// While the hub does not know its cluster (a new cluster before the leader's
// InitCluster commits), a watcher that names one is held at its revision:
// serving it changes or a reset could mix two histories.
func TestWatcherNamingAClusterWaitsForTheHubs(t *testing.T) {
	for _, tc := range []struct {
		hubCluster string
		wantReset  bool
	}{{"other", true}, {"mine", false}} {
		t.Run(tc.hubCluster, func(t *testing.T) {
			h, f := newTestHub(t, Options{}, 0)
			f.publish(h, 1, 2, 3)
			w := watchCluster(t, h, 2, "mine", 4)
			if m := w.next(t); m.GetProgressRevision() != 2 {
				t.Fatalf("got %v, want only progress at the watcher's revision 2", m)
			}
			f.publish(h, 4)
			select {
			case m := <-w.msgs:
				t.Fatalf("hub without a cluster id sent %v to a watcher naming one", m)
			default:
			}
			f.setCluster(h, tc.hubCluster)
			if tc.wantReset {
				w.expectReset(t, 4)
			} else {
				w.expectChanges(t, 3, 4)
			}
		})
	}
}

// A member that knows its cluster id from its data dir but whose state does
// not carry it yet resets a foreign watcher only once the state has it, so
// the reset tells the watcher that its history changed.
func TestForeignWatcherIsResetToAStateThatNamesTheCluster(t *testing.T) {
	h, f := newTestHub(t, Options{}, 0)
	h.SetClusterID("new") // persisted id; the fake state has none yet
	f.publish(h, 1, 2)
	w := watchCluster(t, h, 50, "old", 4)
	if m := w.next(t); m.GetProgressRevision() != 50 {
		t.Fatalf("got %v, want only progress at the watcher's revision while the state names no cluster", m)
	}
	f.cluster.Store(ptr("new"))
	f.publish(h, 3)
	m := w.nextData(t)
	if st := m.GetReset_(); st == nil || st.GetRevision() != 3 || st.GetClusterId() != "new" {
		t.Fatalf("got %v, want a reset to cluster new at 3", m)
	}
}

func ptr(s string) *string { return &s }
