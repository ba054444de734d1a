// Package filewatch owns noticing that files a process loaded (TLS key
// pairs, CA bundles) changed since, cheaply enough to ask on a TLS
// handshake: a Throttle lets one caller look at most once per interval, and
// a Snapshot remembers the files' contents with what stat said of them, so
// that looking is a stat per file and reading happens only when size or
// modification time moved, or when the snapshot was taken too soon after a
// write for them to tell.
package filewatch

import (
	"bytes"
	"os"
	"sync/atomic"
	"time"
)

// RacyWindow is how recently a file may have been modified for its size
// and modification time not to prove it unchanged: file systems stamp times
// with a coarse clock (ext4: a few milliseconds, FAT: two seconds), so a
// file rewritten right after it was read can keep both. Such a snapshot is
// stale at the next look, and its holder compares contents (SameContent),
// as git does for a "racily clean" index entry.
const RacyWindow = 2 * time.Second

type stamp struct {
	size int64
	mod  time.Time
}

// Snapshot is the contents of some files, in the order they were named,
// and what stat said of them just before they were read.
type Snapshot struct {
	paths  []string
	data   [][]byte
	stamps []stamp
	racy   bool
}

// Read stats and then reads the files.
func Read(paths ...string) (*Snapshot, error) {
	readAt := time.Now() // the file system's clock, which stamps the files
	st, err := stat(paths)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{paths: paths, stamps: st, data: make([][]byte, len(paths))}
	for i, p := range paths {
		if s.data[i], err = os.ReadFile(p); err != nil {
			return nil, err
		}
		s.racy = s.racy || st[i].mod.After(readAt.Add(-RacyWindow))
	}
	return s, nil
}

// Data is the i-th file's contents.
func (s *Snapshot) Data(i int) []byte { return s.data[i] }

// Stale reports whether the files may have changed since s was read: a
// size or modification time moved, or s was racy. It only stats them; an
// error is stat's.
func (s *Snapshot) Stale() (bool, error) {
	st, err := stat(s.paths)
	if err != nil {
		return false, err
	}
	for i := range st {
		if st[i] != s.stamps[i] {
			return true, nil
		}
	}
	return s.racy, nil
}

// SameContent reports whether s and o hold the same bytes for every file.
func (s *Snapshot) SameContent(o *Snapshot) bool {
	if len(s.data) != len(o.data) {
		return false
	}
	for i := range s.data {
		if !bytes.Equal(s.data[i], o.data[i]) {
			return false
		}
	}
	return true
}

func stat(paths []string) ([]stamp, error) {
	out := make([]stamp, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		out[i] = stamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// Throttle lets callers through at most once per interval, one at a time
// per interval, without a lock. The zero value lets the first caller
// through.
type Throttle struct{ last atomic.Int64 }

// Due reports whether now is at least every past the last pass, and if so
// records now as the last pass for this caller alone.
func (t *Throttle) Due(now time.Time, every time.Duration) bool {
	n, last := now.UnixNano(), t.last.Load()
	return n-last >= int64(every) && t.last.CompareAndSwap(last, n)
}

// Mark records now as the last pass (a look made outside Due).
func (t *Throttle) Mark(now time.Time) { t.last.Store(now.UnixNano()) }
