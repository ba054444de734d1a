package raftstore

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// TestPipelinedReplicationIsOff guards the transport setting that avoids
// hashicorp/raft's pipeline deadlock (a follower that silently stops
// receiving entries, and a Shutdown that never returns).
func TestPipelinedReplicationIsOff(t *testing.T) {
	s, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.transport.AppendEntriesPipeline("n2", "127.0.0.1:1")
	if !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("pipelined replication is enabled (AppendEntriesPipeline: %v)", err)
	}
}
