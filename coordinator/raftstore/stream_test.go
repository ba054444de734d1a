package raftstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// TestInjectedDialerCarriesRaft checks that a store given Dial reaches its
// peers through it, and keeps pipelined replication off.
func TestInjectedDialerCarriesRaft(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	peer, err := Open(Config{Name: "n2", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	s, err := Open(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quiet, Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var resp raft.RequestVoteResponse
	err = s.transport.RequestVote("n2", raft.ServerAddress(peer.RaftAddr()), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte(s.RaftAddr())}, Term: 1, Candidate: s.transport.EncodePeer("n1", s.transport.LocalAddr()),
	}, &resp)
	if err != nil {
		t.Fatalf("RequestVote through the injected dialer: %v", err)
	}
	mu.Lock()
	got := append([]string(nil), dialed...)
	mu.Unlock()
	if len(got) != 1 || got[0] != peer.RaftAddr() {
		t.Fatalf("dialed %v, want the peer's raft address %s once", got, peer.RaftAddr())
	}
	if _, err := s.transport.AppendEntriesPipeline("n2", raft.ServerAddress(peer.RaftAddr())); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("pipelined replication is enabled with an injected dialer (AppendEntriesPipeline: %v)", err)
	}
}
