package raftstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestInjectedDialerCarriesRaft checks that a store given Dial reaches its
// peers through it, and keeps pipelined replication off.
func TestInjectedDialerCarriesRaft(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	peer, err := openTest(Config{Name: "n2", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quiet})
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
	s, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quiet, Dial: dial})
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

// A connection to the raft port that does not open with the handshake (any
// other program, or a raft peer of another kind) is closed before raft
// decodes a byte of it, and the member goes on serving its real peers.
func TestRaftPortRefusesConnectionsWithoutTheHandshake(t *testing.T) {
	s, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, junk := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x00\x01\x02 raw msgpack-looking bytes that are not a handshake",
		"edgecell-raft/1\n",          // the protocol before cluster ids
		"edgecell-raft/3 cluster=\n", // a version this member does not speak
		"edgecell-raft/2 cluster=" + strings.Repeat("a", 200) + "\n",
		"edgecell-raft/2 cluster=Not Valid\n",
	} {
		conn, err := net.Dial("tcp", s.RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte(junk)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		conn.Close()
		if err == nil || n > 0 {
			t.Fatalf("raft answered %q to %q; want the connection closed", buf[:n], junk)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection sending %q was left open", junk)
		}
	}
	// The member's own transport still works: a vote request through the
	// handshake gets an answer.
	peer, err := openTest(Config{Name: "n2", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var resp raft.RequestVoteResponse
	if err := peer.transport.RequestVote("n1", raft.ServerAddress(s.RaftAddr()), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n2"), Addr: []byte(peer.RaftAddr())}, Term: 1,
	}, &resp); err != nil {
		t.Fatalf("a real peer's RequestVote after the junk: %v", err)
	}
}

// dataDirOfCluster is a fresh data dir whose member already belongs to
// cluster id ("" for none), as a member that applied InitCluster leaves it.
func dataDirOfCluster(t *testing.T, id string) string {
	t.Helper()
	dir := t.TempDir()
	if id != "" {
		if err := writeClusterID(dir, id); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Members of two clusters cannot talk raft to each other; a member that
// knows no cluster yet (new, or wiped to join) can talk to any.
func TestRaftHandshakeRefusesMembersOfAnotherCluster(t *testing.T) {
	s, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: dataDirOfCluster(t, "cluster-a"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.ClusterID(); got != "cluster-a" {
		t.Fatalf("ClusterID() = %q after a restart with a persisted id, want cluster-a", got)
	}
	for _, tc := range []struct {
		peerCluster string
		wantOK      bool
	}{{"cluster-a", true}, {"", true}, {"cluster-b", false}} {
		peer, err := openTest(Config{Name: "n2", RaftAddr: "127.0.0.1:0", DataDir: dataDirOfCluster(t, tc.peerCluster), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		var resp raft.RequestVoteResponse
		err = peer.transport.RequestVote("n1", raft.ServerAddress(s.RaftAddr()), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n2"), Addr: []byte(peer.RaftAddr())}, Term: 1,
		}, &resp)
		peer.Close()
		if (err == nil) != tc.wantOK {
			t.Errorf("RequestVote from a member of cluster %q to one of cluster-a: err=%v, want ok=%v", tc.peerCluster, err, tc.wantOK)
		}
	}
}

func TestDamagedClusterIDFileRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, clusterIDName), []byte("\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openTest(Config{Name: "n1", RaftAddr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), filepath.Join(dir, clusterIDName)) {
		t.Fatalf("Open with a damaged cluster-id file: %v, want ErrDataDir naming the file", err)
	}
}
