package raftstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/freeport"
	"github.com/edgecell/edgecell/internal/testutil"
)

// recorder is a Publisher that keeps the changes it received.
type recorder struct {
	mu      sync.Mutex
	changes []*pb.Change
}

func (r *recorder) Publish(ch *pb.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, ch)
}

func (r *recorder) Reset(uint64)        {}
func (r *recorder) SetClusterID(string) {}

func (r *recorder) published() []*pb.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pb.Change(nil), r.changes...)
}

// The store drives the state machine and the publisher it was given: a
// committed command changes the caller's state.Store and its change reaches
// the caller's publisher, and every read level answers from that state.
func TestOpenDrivesTheInjectedStateAndPublisher(t *testing.T) {
	st, pub := state.New(), &recorder{}
	addr, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Name: "n1", RaftAddr: addr, DataDir: t.TempDir(), Logger: quietLogger(),
		Bootstrap: map[string]string{"n1": addr}}, st, pub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	testutil.Eventually(t, 10*time.Second, func() error {
		if !s.IsLeader() {
			return errors.New("not leader yet")
		}
		return nil
	})
	proposeMember(t, s, &pb.Member{Name: "n1", Region: "r1", RaftAddr: s.RaftAddr(), GrpcAddr: "127.0.0.1:7101"})
	rev := st.Freeze().Revision()
	if _, ok := st.Freeze().Member("n1"); !ok || rev == 0 {
		t.Fatalf("the injected state holds no member n1 (revision %d)", rev)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if chs := pub.published(); len(chs) == 0 || chs[len(chs)-1].GetRevision() != rev {
			return errors.New("the publisher has not received the change yet")
		}
		return nil
	})
	ctx := context.Background()
	for _, c := range []pb.Consistency{pb.Consistency_CONSISTENCY_UNSPECIFIED, pb.Consistency_CONSISTENCY_STALE, pb.Consistency_CONSISTENCY_LEADER, pb.Consistency_CONSISTENCY_LINEARIZABLE} {
		v, err := s.Read(ctx, c)
		if err != nil {
			t.Fatalf("%v read: %v", c, err)
		}
		if _, ok := v.Member("n1"); !ok || v.Revision() != rev {
			t.Fatalf("%v read at revision %d without n1; want revision %d with it", c, v.Revision(), rev)
		}
	}
}

// A member that is not the leader serves stale reads only: leader and
// linearizable ones fail with ErrNotLeader (the services forward them).
func TestFollowerServesOnlyStaleReads(t *testing.T) {
	s, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if v, err := s.Read(ctx, pb.Consistency_CONSISTENCY_STALE); err != nil || v.Revision() != 0 {
		t.Fatalf("stale read: revision %d, %v; want 0 and no error", v.Revision(), err)
	}
	for _, c := range []pb.Consistency{pb.Consistency_CONSISTENCY_LEADER, pb.Consistency_CONSISTENCY_LINEARIZABLE, pb.Consistency_CONSISTENCY_UNSPECIFIED} {
		if _, err := s.Read(ctx, c); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("%v read on a member with no cluster: %v; want ErrNotLeader", c, err)
		}
	}
}
