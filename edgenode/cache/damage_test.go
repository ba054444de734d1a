package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	bolt "go.etcd.io/bbolt"
)

// bigState spans many pages: every bucket has branch pages or overflow.
func bigState(rev uint64) *pb.State {
	st := state(rev)
	for i := range 100 {
		st.Config.Cells = append(st.Config.Cells, &pb.Cell{Id: fmt.Sprintf("cell-%03d", i), Endpoints: []*pb.Endpoint{
			{Id: fmt.Sprintf("ep-%03d", i), Url: fmt.Sprintf("http://127.0.0.1:%d", 2000+i), Region: "us-east"},
		}})
	}
	for i := range 3000 {
		st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: fmt.Sprintf("tenant-%05d", i), Cell: fmt.Sprintf("cell-%03d", i%100)})
	}
	st.Keys = []*pb.ApiKey{{Id: "k_0123456789abcdef", Name: "ci", Secrets: []*pb.KeySecret{{Secret: "s3cret-s3cret-s3cret-s3cret-s3cr"}}}}
	return st
}

// writeCache writes a real cache at path: a reset, then ten revisions of
// changes that add and delete placements, so both meta pages were written
// and pages were freed. legacy writes it as edges did before the freelist
// was synced (bbolt rebuilds the freelist at every open of such a file).
func writeCache(t *testing.T, path string, legacy bool) {
	t.Helper()
	var s *Store
	if legacy {
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
		if err != nil {
			t.Fatal(err)
		}
		s = &Store{db: db, path: path}
	} else {
		s = open(t, path)
	}
	defer s.Close()
	if err := s.Write(Update{Reset: bigState(10)}); err != nil {
		t.Fatal(err)
	}
	for rev := uint64(11); rev <= 20; rev++ {
		var evs []*pb.Event
		for i := range 50 {
			evs = append(evs,
				&pb.Event{Kind: &pb.Event_PutPlacement{PutPlacement: &pb.Placement{Key: fmt.Sprintf("new-%02d-%02d", rev, i), Cell: "c1"}}},
				&pb.Event{Kind: &pb.Event_DeletePlacement{DeletePlacement: fmt.Sprintf("tenant-%05d", int(rev)*100+i)}})
		}
		if err := s.Write(Update{Changes: []*pb.Change{{Revision: rev, Events: evs}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// layout is where a damage lands: the page size, and a leaf page in use,
// without overflow, nearest the middle of the file.
type layout struct {
	pageSize int
	mid      int
}

func inspect(t *testing.T, path string, legacy bool) layout {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: legacy})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := layout{pageSize: db.Info().PageSize, mid: -1}
	db.View(func(tx *bolt.Tx) error {
		hwm := int(tx.Size()) / l.pageSize
		dist := func(id int) int { return max(id-hwm/2, hwm/2-id) }
		for id := 2; id < hwm; id++ {
			if pi, err := tx.Page(id); err == nil && pi != nil && pi.Type == "leaf" && pi.OverflowCount == 0 && (l.mid < 0 || dist(id) < dist(l.mid)) {
				l.mid = id
			}
		}
		return nil
	})
	if l.mid < 0 {
		t.Fatal("no leaf page in the file")
	}
	return l
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{9}).Read(b)
	return b
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Every kind of damage: Open succeeds, the damaged file is kept aside byte
// for byte, nothing loads, and the fresh file works and survives a reopen.
// Several of these made the previous Open panic in a goroutine of bbolt's
// (rebuilding the freelist, or checking) or fault on an address past the
// file: the process died.
func TestDamagedFileIsMovedAside(t *testing.T) {
	cases := []struct {
		name   string
		legacy bool
		damage func(t *testing.T, path string, l layout)
	}{
		{name: "truncated to half", damage: func(t *testing.T, path string, _ layout) {
			truncate(t, path, fileSize(t, path)/2)
		}},
		{name: "truncated to one page", damage: func(t *testing.T, path string, l layout) {
			truncate(t, path, int64(l.pageSize))
		}},
		{name: "a middle page random bytes", damage: func(t *testing.T, path string, l layout) {
			overwrite(t, path, int64(l.mid*l.pageSize), randomBytes(l.pageSize))
		}},
		{name: "a middle page random bytes after its header", damage: func(t *testing.T, path string, l layout) {
			overwrite(t, path, int64(l.mid*l.pageSize+pageHeaderSize), randomBytes(l.pageSize-pageHeaderSize))
		}},
		{name: "a key 2 GiB past its page", damage: func(t *testing.T, path string, l layout) {
			overwrite(t, path, int64(l.mid*l.pageSize+pageHeaderSize+4), binary.LittleEndian.AppendUint32(nil, 0x7FFFFFF0))
		}},
		// bbolt would open it from the other meta page, but its
		// consistency check refuses a meta page that is not one.
		{name: "first page garbage", damage: func(t *testing.T, path string, l layout) {
			overwrite(t, path, 0, randomBytes(l.pageSize))
		}},
		{name: "both meta pages garbage", damage: func(t *testing.T, path string, l layout) {
			overwrite(t, path, 0, randomBytes(2*l.pageSize))
		}},
		{name: "whole file random bytes", damage: func(t *testing.T, path string, _ layout) {
			overwrite(t, path, 0, randomBytes(int(fileSize(t, path))))
		}},
		{name: "records that are not protobuf", damage: func(t *testing.T, path string, _ layout) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketCells)
				var keys [][]byte
				b.ForEach(func(k, _ []byte) error { keys = append(keys, slices.Clone(k)); return nil })
				for _, k := range keys {
					if err := b.Put(k, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "older edge's file (freelist not synced), a middle page random bytes", legacy: true, damage: func(t *testing.T, path string, l layout) {
			overwrite(t, path, int64(l.mid*l.pageSize), randomBytes(l.pageSize))
		}},
		{name: "older edge's file (freelist not synced), a key 2 GiB past its page", legacy: true, damage: func(t *testing.T, path string, l layout) {
			overwrite(t, path, int64(l.mid*l.pageSize+pageHeaderSize+4), binary.LittleEndian.AppendUint32(nil, 0x7FFFFFF0))
		}},
		{name: "not a regular file", damage: func(t *testing.T, path string, _ layout) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edge.db")
			writeCache(t, path, c.legacy)
			c.damage(t, path, inspect(t, path, c.legacy))
			damaged, _ := os.ReadFile(path) // nil for a directory

			s := open(t, path)
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				s.Close()
				t.Fatalf("damaged file not moved aside: %v", aside)
			}
			if kept, _ := os.ReadFile(aside[0]); !bytes.Equal(kept, damaged) {
				t.Errorf("%s does not hold the damaged file's bytes (%d bytes, want %d)", aside[0], len(kept), len(damaged))
			}
			if tb := load(t, s); tb.Revision() != 0 || tb.Placements() != 0 {
				t.Errorf("loaded %s from a damaged file", describe(tb))
			}
			if err := s.Write(Update{Reset: bigState(50)}); err != nil {
				t.Fatal(err)
			}
			s.Close()

			s = open(t, path)
			defer s.Close()
			if tb := load(t, s); tb.Revision() != 50 || tb.Placements() != 3002 {
				t.Errorf("fresh file reloaded %s", describe(tb))
			}
			if again, _ := filepath.Glob(path + ".corrupt-*"); len(again) != 1 {
				t.Errorf("the fresh file was moved aside too: %v", again)
			}
		})
	}
}

// refusingLoader refuses every cell, as route.Builder refuses one that does
// not make sense.
type refusingLoader struct{ discardLoader }

func (refusingLoader) PutCell(c *pb.Cell) error { return fmt.Errorf("cell %s refused", c.GetId()) }

// A state that decodes but that the edge cannot load must not come back at
// every start: Load keeps a copy aside and empties the store.
func TestRefusedLoadKeepsACopyAndEmptiesTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s := open(t, path)
	defer s.Close()
	if err := s.Write(Update{Reset: state(10)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(refusingLoader{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load = %v, want ErrCorrupt", err)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("no copy aside: %v", aside)
	}
	if rev, err := s.Revision(); err != nil || rev != 0 {
		t.Fatalf("after a refused load the store is at %d (%v), want 0", rev, err)
	}
	if tb := load(t, s); tb.Revision() != 0 {
		t.Fatalf("loaded %s after a refused load", describe(tb))
	}
	// The copy is a cache file holding the refused state.
	kept := open(t, aside[0])
	defer kept.Close()
	if rev, err := kept.Revision(); err != nil || rev != 10 {
		t.Fatalf("copy aside is at %d (%v), want 10", rev, err)
	}
	if err := s.Write(Update{Reset: state(20)}); err != nil {
		t.Fatal(err)
	}
	if tb := load(t, s); tb.Revision() != 20 {
		t.Fatalf("after a write: %s", describe(tb))
	}
}

// An edge crash-looping on a bad disk keeps the newest three damaged files,
// not every one.
func TestOnlyTheNewestDamagedFilesAreKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.db")
	old := []string{"corrupt-100", "corrupt-101", "corrupt-102", "corrupt-103", "corrupt-103-2", "corrupt-notes"}
	for _, n := range old {
		if err := os.WriteFile(path+"."+n, []byte(n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, randomBytes(64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	s.Close()
	var got []string
	aside, _ := filepath.Glob(path + ".corrupt-*")
	for _, a := range aside {
		got = append(got, filepath.Base(a))
	}
	if len(got) != 4 || !slices.Contains(got, "edge.db.corrupt-103") || !slices.Contains(got, "edge.db.corrupt-103-2") || !slices.Contains(got, "edge.db.corrupt-notes") {
		t.Fatalf("kept %v, want the new one, corrupt-103-2, corrupt-103, and corrupt-notes (not ours)", got)
	}
}

func TestDirectoryAndFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "edge.db")
	open(t, path).Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	// A file left readable by an older version is restricted on open.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	open(t, path).Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("reopened file is %v, want 0600", fi.Mode().Perm())
	}
}

// A damaged file that an older version left readable, in a readable
// directory, is kept aside 0600 and the directory is narrowed to 0700.
func TestDamagedCopiesAreNotReadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "edge.db")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a bbolt file, but it names sk_secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	open(t, path).Close()
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("copies aside: %v, want one", aside)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, aside[0]: 0o600, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}
}

// A shared directory like /tmp is refused, not narrowed under everyone.
func TestSharedDirectoryIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(dir, "edge.db"), discard); err == nil || !strings.Contains(err.Error(), "shared directory") {
		t.Fatalf("Open in a sticky directory: %v; want an error naming a shared directory", err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o777 {
		t.Fatalf("the shared directory's mode changed to %v", fi.Mode().Perm())
	}
}

// A file written by an older edge, whose freelist bbolt did not sync, is
// not damage: it loads, and is converted on the way.
func TestOlderEdgesFileLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	writeCache(t, path, true)
	for range 2 {
		s := open(t, path)
		tb := load(t, s)
		s.Close()
		if tb.Revision() != 20 || tb.Placements() != 3002 {
			t.Fatalf("older file loaded %s", describe(tb))
		}
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 0 {
		t.Fatalf("moved aside: %v", aside)
	}
}
