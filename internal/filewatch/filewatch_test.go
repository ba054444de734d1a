package filewatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A snapshot is stale once a file's size or time moved, and right after a
// write (racy) even when neither did; contents tell a touch from a change.
func TestSnapshotNoticesChanges(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte("one"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{a, b} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Read(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if stale, err := s.Stale(); err != nil || stale {
		t.Fatalf("untouched files: stale %v (%v), want false", stale, err)
	}
	if err := os.WriteFile(b, []byte("two"), 0o600); err != nil { // same size, new time
		t.Fatal(err)
	}
	if stale, err := s.Stale(); err != nil || !stale {
		t.Fatalf("b rewritten: stale %v (%v), want true", stale, err)
	}
	next, err := Read(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if next.SameContent(s) || string(next.Data(1)) != "two" {
		t.Fatalf("rewritten b reads %q and counts as the same content", next.Data(1))
	}
	// Read within RacyWindow of b's write: stale until looked at again.
	if stale, err := next.Stale(); err != nil || !stale {
		t.Fatalf("a snapshot taken right after a write: stale %v (%v), want true (racy)", stale, err)
	}
	again, _ := Read(a, b)
	if !again.SameContent(next) {
		t.Fatal("the same bytes read twice differ")
	}
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stale(); err == nil {
		t.Fatal("a removed file: Stale gave no error")
	}
}

// One caller per interval gets through.
func TestThrottle(t *testing.T) {
	var th Throttle
	t0 := time.Unix(1000, 0)
	if !th.Due(t0, time.Second) || th.Due(t0.Add(999*time.Millisecond), time.Second) {
		t.Fatal("Due let a second caller through within the interval")
	}
	if !th.Due(t0.Add(time.Second), time.Second) {
		t.Fatal("Due refused a caller one interval later")
	}
	th.Mark(t0.Add(5 * time.Second))
	if th.Due(t0.Add(5500*time.Millisecond), time.Second) {
		t.Fatal("Due ignored Mark")
	}
}
