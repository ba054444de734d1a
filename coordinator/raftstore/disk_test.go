package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/freeport"
	"github.com/edgecell/edgecell/internal/testutil"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openTest opens a store over a fresh state with no watchers.
func openTest(cfg Config) (*Store, error) { return Open(cfg, state.New(), discard{}) }

// discard is a Publisher with no watchers.
type discard struct{}

func (discard) Publish(*pb.Change)  {}
func (discard) Reset(uint64)        {}
func (discard) SetClusterID(string) {}

func storeEntries(t *testing.T, ls *logStore, term, from, to uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d term %d %s", i, term, strings.Repeat("x", 200)))})
	}
	if err := ls.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

// The failure that retired raft-wal: raft's "clearing log suffix" (a
// follower dropping entries a deposed leader never committed) followed by a
// restart. Every entry kept and every entry written after the truncation
// must be readable after reopening.
func TestLogSurvivesTailTruncationAndRestart(t *testing.T) {
	dir := t.TempDir()
	ls, err := openLogStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	storeEntries(t, ls, 1, 1, 500)
	if err := ls.DeleteRange(401, 500); err != nil { // clearing log suffix
		t.Fatal(err)
	}
	storeEntries(t, ls, 2, 401, 450)
	if err := ls.DeleteRange(1, 100); err != nil { // compaction after a snapshot
		t.Fatal(err)
	}
	if err := ls.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := ls.Close(); err != nil {
		t.Fatal(err)
	}

	ls, err = openLogStore(dir)
	if err != nil {
		t.Fatalf("reopen after a tail truncation: %v", err)
	}
	defer ls.Close()
	first, _ := ls.FirstIndex()
	last, _ := ls.LastIndex()
	if first != 101 || last != 450 {
		t.Fatalf("log spans %d..%d after reopening, want 101..450", first, last)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := ls.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		wantTerm := uint64(1)
		if i > 400 {
			wantTerm = 2
		}
		if l.Term != wantTerm || !bytes.HasPrefix(l.Data, []byte(fmt.Sprintf("entry %d term %d", i, wantTerm))) {
			t.Fatalf("entry %d is term %d %q, want term %d", i, l.Term, l.Data[:20], wantTerm)
		}
	}
	if term, err := ls.GetUint64([]byte("CurrentTerm")); err != nil || term != 2 {
		t.Fatalf("CurrentTerm = %d, %v; want 2", term, err)
	}
}

// A data dir from the raft-wal era is refused, naming the directory and the
// way back (remove, wipe, join), never started empty.
func TestLegacyWALDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(walDir, "00000000000000000001-0000000000000001.wal"), []byte("segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger(),
		Bootstrap: map[string]string{"n1": "127.0.0.1:0"}})
	if !errors.Is(err, ErrDataDir) {
		t.Fatalf("Open on a raft-wal data dir: %v, want ErrDataDir", err)
	}
	for _, want := range []string{walDir, "cluster remove", "cluster join"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, raftDBName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a raft.db was created beside the refused wal/ (stat: %v)", err)
	}
}

// A raft.db damaged on disk is refused with an error naming it, never a
// panic, and it is left exactly as it was for the operator to inspect.
func TestDamagedRaftDBRefused(t *testing.T) {
	const page = 4096
	damages := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
	}{
		{"truncated to half", func(t *testing.T, path string, size int64) { truncate(t, path, size/2) }},
		{"truncated to one page", func(t *testing.T, path string, size int64) { truncate(t, path, page) }},
		{"truncated mid-page", func(t *testing.T, path string, size int64) { truncate(t, path, 3*page+100) }},
		{"meta pages garbage", func(t *testing.T, path string, size int64) { overwrite(t, path, 0, 2*page, 1) }},
		{"whole file garbage", func(t *testing.T, path string, size int64) { overwrite(t, path, 0, size, 2) }},
		{"zeroed", func(t *testing.T, path string, size int64) { zero(t, path, size) }},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			ls, err := openLogStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			storeEntries(t, ls, 1, 1, 400)
			ls.Close()
			path := filepath.Join(dir, raftDBName)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			d.damage(t, path, fi.Size())
			before, _ := os.ReadFile(path)

			_, err = openLogStore(dir)
			if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), path) {
				t.Fatalf("opening a damaged raft.db: %v; want ErrDataDir naming %s", err, path)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Errorf("the damaged file was changed by the refused open")
			}
		})
	}
}

// The data dir and raft.db are private to the member: they hold API key
// secrets and the nonce store.
func TestDataDirPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, raftDBName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s is mode %v, want %v", path, got, want)
		}
	}
}

// A shared directory like /tmp is refused, not narrowed under everyone.
func TestSharedDataDirIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	_, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), "shared directory") {
		t.Fatalf("Open on a sticky directory: %v; want ErrDataDir naming a shared directory", err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o777 {
		t.Fatalf("the shared directory's mode changed to %v", fi.Mode().Perm())
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func overwrite(t *testing.T, path string, off, n int64, seed uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, seed))
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

func zero(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
}

// openSingle starts a one-member cluster on dir and waits for it to lead.
func openSingle(t *testing.T, dir, raftAddr string) *Store {
	t.Helper()
	s, err := openTest(Config{Name: "n1", RaftAddr: raftAddr, DataDir: dir, Logger: quietLogger(),
		Bootstrap: map[string]string{"n1": raftAddr}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if !s.IsLeader() {
			return errors.New("not leader yet")
		}
		return nil
	})
	return s
}

func putMembers(t *testing.T, s *Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		m := &pb.Member{Name: fmt.Sprintf("m%03d", i), Region: "us-east", RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2"}
		res, err := s.Propose(context.Background(), &pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: m}}})
		if err != nil || res.GetError() != nil {
			t.Fatalf("put member %d: %v %v", i, err, res.GetError())
		}
	}
}

// A member whose newest snapshot was damaged while it was down (the CRC
// raft keeps for each no longer matches) starts from the older one and the
// log, with every entry; a snapshot interrupted by a kill (a .tmp
// directory) is cleared away at start.
func TestDamagedSnapshotFallsBackToTheOlderOne(t *testing.T) {
	dir := t.TempDir()
	addr, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	s := openSingle(t, dir, addr)
	putMembers(t, s, 0, 20)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putMembers(t, s, 20, 40)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putMembers(t, s, 40, 50)
	s.Close()

	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots on disk, want 2", len(snaps))
	}
	newest := snaps[len(snaps)-1] // names sort by term, index, time
	fi, _ := os.Stat(newest)
	truncate(t, newest, fi.Size()/2)
	interrupted := filepath.Join(dir, "snapshots", "2-999-1700000000000.tmp")
	if err := os.MkdirAll(interrupted, 0o700); err != nil {
		t.Fatal(err)
	}

	s = openSingle(t, dir, addr)
	defer s.Close()
	if err := s.ReadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, ok := s.View().Member(fmt.Sprintf("m%03d", i)); !ok {
			t.Fatalf("member m%03d is gone after starting from the older snapshot", i)
		}
	}
	if _, err := os.Stat(interrupted); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted snapshot %s is still there (stat: %v)", interrupted, err)
	}
}
