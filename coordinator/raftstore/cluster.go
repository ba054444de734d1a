package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/edgecell/edgecell/internal/clusterid"
)

// The member's cluster id. It lives in the replicated state
// (state.View.ClusterID), which a restarted member only has back once it
// has replayed its log after contact with a leader; the copy in
// <data-dir>/cluster-id gives it at once, so the raft handshake can refuse a
// member of another cluster from the first connection and the watch hub can
// tell an edge of another cluster from one that is merely ahead.
const clusterIDName = "cluster-id"

// readClusterID returns the id persisted in dir, "" when there is none.
func readClusterID(dir string) (string, error) {
	path := filepath.Join(dir, clusterIDName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("raftstore: read %s: %w", path, err)
	}
	id := string(bytes.TrimSuffix(b, []byte("\n")))
	if err := clusterid.Validate(id); err != nil {
		return "", fmt.Errorf("%w: %s: %v; it holds the id of the cluster this member belongs to: restore it from another member's copy (edgecell cluster status shows the id), or remove the member, wipe the data dir and cluster join again",
			ErrDataDir, path, err)
	}
	return id, nil
}

// writeClusterID persists id in dir, atomically (write, fsync, rename,
// fsync of the directory), 0600.
func writeClusterID(dir, id string) error {
	path := filepath.Join(dir, clusterIDName)
	tmp, err := os.CreateTemp(dir, clusterIDName+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(fileMode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(id + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// clusterIdentity is the cluster id this member knows: the persisted one
// until the state has its own, then the state's, kept in the file.
type clusterIdentity struct {
	dir string
	log *slog.Logger

	mu sync.Mutex
	id string
}

// get is the id, "" when this member knows none (a new cluster before the
// leader's InitCluster committed, or a new member before it caught up).
func (c *clusterIdentity) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// learn records the state's id (called by the FSM after every apply and
// restore) and reports whether the known id changed. The state's id wins
// over the file: it is what raft replicated to this member.
func (c *clusterIdentity) learn(fromState string) bool {
	if fromState == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if fromState == c.id {
		return false
	}
	if c.id != "" {
		c.log.Error("the replicated state names another cluster than this member's cluster-id file; following the state",
			"file", filepath.Join(c.dir, clusterIDName), "file_cluster_id", c.id, "cluster_id", fromState)
	}
	if err := writeClusterID(c.dir, fromState); err != nil {
		// The id stays in the replicated state; only the early check at the
		// next start is lost. Keep going, loudly.
		c.log.Error("could not persist the cluster id", "dir", c.dir, "cluster_id", fromState, "error", err)
	}
	c.id = fromState
	return true
}
