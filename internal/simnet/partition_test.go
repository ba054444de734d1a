package simnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// TestPartitionCutsRegionOff: while b is partitioned, dials from a to b fail
// at once naming b, open connections between them fail at once on both
// sides, and traffic within a region still flows; Heal lets new dials through.
func TestPartitionCutsRegionOff(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 20})
	peerEnded := make(chan struct{}, 3) // one per connection served
	srv := listen(t, func(c net.Conn) {
		io.Copy(c, c)
		peerEnded <- struct{}{}
	})
	addr := srv.Addr().String()
	n.Register(addr, "b")
	sameRegion := dial(t, n.Dialer("b", nil), addr)
	cross := dial(t, n.Dialer("a", nil), addr)
	minRTT(t, cross, 1) // the connection works

	readErr := make(chan error, 1)
	go func() {
		_, err := cross.Read(make([]byte, 1))
		readErr <- err
	}()
	if got := n.Partition("b"); got != 1 {
		t.Errorf("Partition cut %d connections, want 1 (the same-region one is not delayed)", got)
	}
	if err := result(t, readErr, "a blocked Read to fail"); !errors.Is(err, ErrPartitioned) {
		t.Errorf("blocked Read: %v, want ErrPartitioned", err)
	}
	if _, err := cross.Write([]byte{1}); !errors.Is(err, ErrPartitioned) {
		t.Errorf("Write after the cut: %v, want ErrPartitioned", err)
	}
	result(t, peerEnded, "the peer to see the connection end")

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.Dialer("a", nil)(ctx, "tcp", addr)
	if !errors.Is(err, ErrPartitioned) || !strings.Contains(err.Error(), "region b is partitioned") {
		t.Fatalf("dial a->b while partitioned: %v, want an error naming region b", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Errorf("dial error %#v is not a dial *net.OpError", err)
	}
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Errorf("refused dial took %v, want it at once (no handshake wait)", d)
	}
	if got := n.Partitioned(); len(got) != 1 || got[0] != "b" {
		t.Errorf("Partitioned() = %v, want [b]", got)
	}

	// Same-region traffic never noticed.
	if rtt := minRTT(t, sameRegion, 3); rtt > 5*time.Millisecond {
		t.Errorf("same-region round trip %v during the partition, want none", rtt)
	}

	n.Heal()
	c := dial(t, n.Dialer("a", nil), addr)
	within(t, "round trip after Heal", minRTT(t, c, 3), 40*time.Millisecond, 30*time.Millisecond)
}

// TestPartitionOtherRegionsUnaffected: cutting c off leaves a-b links alone,
// open and new.
func TestPartitionOtherRegionsUnaffected(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 5})
	srv := listen(t, echo)
	n.Register(srv.Addr().String(), "b")
	open := dial(t, n.Dialer("a", nil), srv.Addr().String())
	if got := n.Partition("c"); got != 0 {
		t.Errorf("Partition(c) cut %d connections, want 0", got)
	}
	minRTT(t, open, 1)
	minRTT(t, dial(t, n.Dialer("a", nil), srv.Addr().String()), 1)
}

// TestPartitionListener: a Listener drops new connections from a partitioned
// region and cuts the open ones.
func TestPartitionListener(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 5})
	addr := echoListener(t, n, "a")
	n.Register("127.0.0.2", "b")
	plain := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c := dial(t, plain.DialContext, addr)
	minRTT(t, c, 1)
	if got := n.Partition("b"); got != 1 {
		t.Errorf("Partition cut %d connections, want 1", got)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read on the cut connection from b: %v, want the connection ended", err)
	}
	// A new connection from b is accepted by the kernel and ended at once.
	c = dial(t, plain.DialContext, addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err == nil {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a connection from partitioned b was served")
		}
	}
}
