package raftstore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/edgecell/edgecell/internal/boltfile"
)

// The data directory of a member:
//
//	<data-dir>/raft.db      raft log and stable store (hashicorp/raft-boltdb/v2, bbolt)
//	<data-dir>/snapshots/   raft's file snapshot store (CRC-checked on open)
//
// raft-boltdb is the store Consul and Vault run on: bbolt commits are
// copy-on-write with two meta pages, so a process killed at any instant
// leaves either the old or the new transaction, and a tail truncation
// (raft's "clearing log suffix" after a leader change) is an ordinary delete.
// raft-wal v0.4.0, which the log lived in before, can leave a sealed segment
// without its index after such a truncation (hashicorp/raft-wal#31); the fix
// is not served by the module proxy we build with, so it is gone.
const (
	raftDBName  = "raft.db"
	legacyWAL   = "wal"
	dirMode     = 0o700
	fileMode    = 0o600
	lockTimeout = time.Second
)

// ErrDataDir is returned when the data directory cannot be used as it is: it
// holds a store this version does not read, a damaged file, or a file another
// process holds. The message names the file and what to do.
var ErrDataDir = errors.New("data directory unusable")

// prepareDataDir creates the data directory 0700, or narrows an existing
// one that others could read (it holds API key secrets and nonces).
func prepareDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("raftstore: create data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("raftstore: data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrDataDir, dir)
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		return fmt.Errorf("%w: %s is a shared directory (sticky bit, like /tmp); give the coordinator a directory of its own inside it", ErrDataDir, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("raftstore: data dir %s is mode %v and cannot be narrowed to %v: %w", dir, perm, fs.FileMode(dirMode), err)
		}
		log.Warn("data dir was readable by others; narrowed it", "path", dir, "was", perm.String(), "now", fs.FileMode(dirMode).String())
	}
	if err := checkLegacyWAL(dir); err != nil {
		return err
	}
	return clearInterruptedSnapshots(dir, log)
}

// clearInterruptedSnapshots removes snapshot directories a kill left half
// written (raft writes <name>.tmp, fsyncs, then renames it). raft ignores
// them but never removes them, so each kill during a snapshot would keep
// one state's worth of disk forever. Nothing writes snapshots yet: raft has
// not started.
func clearInterruptedSnapshots(dir string, log *slog.Logger) error {
	tmps, err := filepath.Glob(filepath.Join(dir, "snapshots", "*.tmp"))
	if err != nil {
		return err
	}
	for _, tmp := range tmps {
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("raftstore: remove interrupted snapshot %s: %w", tmp, err)
		}
		log.Warn("removed a snapshot a crash interrupted", "path", tmp)
	}
	return nil
}

// checkLegacyWAL refuses a data directory whose raft log is in raft-wal's
// format. Starting empty beside it would make this member vote and accept
// entries as if it had never held any: it must rejoin instead.
func checkLegacyWAL(dir string) error {
	walDir := filepath.Join(dir, legacyWAL)
	entries, err := os.ReadDir(walDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftstore: inspect %s: %w", walDir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s holds a raft log written by raft-wal (edgecell before the move to raft-boltdb), which this version does not read. "+
		"Remove this member from the cluster from a healthy member (edgecell cluster remove NAME), move %s away, "+
		"start this member with the empty directory and add it again (edgecell cluster join ...): it catches up from the leader's snapshot",
		ErrDataDir, walDir, dir)
}

// logStore is raft's log and stable store, with raft's log cache in front
// for reads of recent entries (replication, read-index).
type logStore struct {
	raft.LogStore
	raft.StableStore
	db *raftboltdb.BoltStore
}

func (l *logStore) Close() error { return l.db.Close() }

// openLogStore opens <dir>/raft.db. A file whose meta pages are invalid or
// name pages past its end (truncated, garbage, another version), or that
// bbolt refuses, is refused with an error naming it; it is never replaced
// silently, because an empty log would let this member vote as if it had
// never acknowledged anything.
func openLogStore(dir string) (*logStore, error) {
	path := filepath.Join(dir, raftDBName)
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	cached, err := raft.NewLogCache(512, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("raftstore: log cache: %w", err)
	}
	return &logStore{LogStore: cached, StableStore: db, db: db}, nil
}

// openBolt opens the bbolt file. bbolt trusts its meta page and panics, in
// goroutines nobody can recover, when a page it points at is missing, so a
// file is first checked by internal/boltfile (a truncated or garbage file
// is refused naming it instead of crash-looping the member).
//
// The freelist is synced (raft-boltdb's and Consul's default): with
// NoFreelistSync bbolt rebuilds it on open by walking every page, which on
// a damaged file panics in such a goroutine.
func openBolt(path string) (db *raftboltdb.BoltStore, err error) {
	if err := boltfile.Validate(path); err != nil {
		return nil, damaged(path, err)
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, damaged(path, fmt.Errorf("%v", r))
		}
	}()
	opts := &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType}
	db, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: opts})
	if err != nil {
		return nil, openError(path, err)
	}
	if err := os.Chmod(path, fileMode); err != nil {
		db.Close()
		return nil, fmt.Errorf("raftstore: %s: %w", path, err)
	}
	return db, nil
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: %s is locked by another process (is another coordinator running on this data dir?)", ErrDataDir, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %s: %v (the coordinator must own its data dir)", ErrDataDir, path, err)
	}
	return damaged(path, err)
}

func damaged(path string, cause error) error {
	return fmt.Errorf("%w: %s is damaged (%v) and was left as it is. "+
		"Move it away (or the whole data dir), remove this member from the cluster (edgecell cluster remove NAME), "+
		"start it empty and add it again (edgecell cluster join ...): it catches up from the leader's snapshot",
		ErrDataDir, path, cause)
}

// checkFile refuses a path that exists but is not a regular file, and an
// empty-but-present raft.db is fine (bbolt initialises it).
func checkFile(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftstore: %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrDataDir, path)
	}
	return nil
}

// describeSnapshotError names the snapshot directory when raft cannot load
// any snapshot at start (each is CRC-checked; raft tries the newest first
// and falls back to older ones).
func describeSnapshotError(dir string, err error) error {
	if err == nil || !strings.Contains(err.Error(), "snapshot") {
		return err
	}
	return fmt.Errorf("%w: %s: %v. Move the damaged snapshot away (the newest is tried first), or rebuild the member: "+
		"remove it from the cluster, start it empty and add it again", ErrDataDir, filepath.Join(dir, "snapshots"), err)
}
