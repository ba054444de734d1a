package simnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/testutil"
)

// listen starts a TCP server on loopback that runs serve on every connection.
func listen(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln
}

func echo(c net.Conn) { io.Copy(c, c) }

// echoListener serves echo on loopback through n.Listener(region, ...) and
// returns its address.
func echoListener(t *testing.T, n *Network, region string) string {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := n.Listener(region, raw)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); echo(c) }()
		}
	}()
	return raw.Addr().String()
}

func newNetwork(t *testing.T, scale float64, lats ...*pb.Latency) *Network {
	t.Helper()
	m, err := NewMatrix(lats, scale)
	if err != nil {
		t.Fatal(err)
	}
	return NewNetwork(m)
}

func dial(t *testing.T, d DialFunc, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fromAToB serves serve in region b and dials it from region a.
func fromAToB(t *testing.T, n *Network, serve func(net.Conn)) net.Conn {
	t.Helper()
	srv := listen(t, serve)
	n.Register(srv.Addr().String(), "b")
	return dial(t, n.Dialer("a", nil), srv.Addr().String())
}

// result waits for a goroutine's result, failing the test after a while.
func result[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// minRTT is the shortest of several one-byte round trips through an echo
// server: the floor the simulation imposes, without the noise a loaded
// machine adds to single samples.
func minRTT(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	best := time.Hour
	b := []byte{0}
	for range n {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// within fails unless got is in [want, want+slack].
func within(t *testing.T, what string, got, want, slack time.Duration) {
	t.Helper()
	if got < want || got > want+slack {
		t.Errorf("%s = %v, want %v (+%v at most)", what, got, want, slack)
	}
}

func TestDialerDelaysBetweenRegions(t *testing.T) {
	// 100 ms one way at scale 0.5: 50 ms each way, a 100 ms round trip.
	n := newNetwork(t, 0.5, &pb.Latency{From: "us-east", To: "ap-south", OneWayMs: 100})
	far := listen(t, echo)
	near := listen(t, echo)
	n.Register(far.Addr().String(), "ap-south")
	n.Register(near.Addr().String(), "us-east")
	d := n.Dialer("us-east", nil)

	start := time.Now()
	c := dial(t, d, far.Addr().String())
	within(t, "dial (handshake) to ap-south", time.Since(start), 100*time.Millisecond, 60*time.Millisecond)
	rtt := minRTT(t, c, 5)
	t.Logf("us-east -> ap-south: matrix round trip 100ms, measured %v", rtt)
	within(t, "round trip us-east -> ap-south", rtt, 100*time.Millisecond, 30*time.Millisecond)

	start = time.Now()
	c = dial(t, d, near.Addr().String())
	within(t, "dial within us-east", time.Since(start), 0, 20*time.Millisecond)
	rtt = minRTT(t, c, 5)
	t.Logf("within us-east: measured %v", rtt)
	within(t, "round trip within us-east", rtt, 0, 5*time.Millisecond)
	if _, ok := c.(*delayConn); ok {
		t.Error("a same-region connection was wrapped")
	}

	// An address nobody registered is not delayed.
	other := listen(t, echo)
	within(t, "round trip to an unregistered address", minRTT(t, dial(t, d, other.Addr().String()), 5), 0, 5*time.Millisecond)
}

func TestSetMatrixAppliesToOpenConnections(t *testing.T) {
	n := newNetwork(t, 1)
	srv := listen(t, echo)
	n.Register(srv.Addr().String(), "eu-west")
	c := dial(t, n.Dialer("us-east", nil), srv.Addr().String())
	within(t, "round trip before the matrix names the pair", minRTT(t, c, 3), 0, 5*time.Millisecond)

	m, err := NewMatrix([]*pb.Latency{{From: "eu-west", To: "us-east", OneWayMs: 30}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	n.SetMatrix(m)
	within(t, "round trip after SetMatrix", minRTT(t, c, 3), 60*time.Millisecond, 30*time.Millisecond)
}

func TestJitterIsBounded(t *testing.T) {
	// 20 ms plus up to 20 ms of jitter each way.
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 20, JitterMs: 20})
	c := fromAToB(t, n, echo)

	lo, hi := time.Hour, time.Duration(0)
	b := []byte{0}
	for range 10 {
		start := time.Now()
		c.Write(b)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		rtt := time.Since(start)
		lo, hi = min(lo, rtt), max(hi, rtt)
	}
	t.Logf("matrix 40-80ms round trip: measured %v to %v", lo, hi)
	if lo < 40*time.Millisecond {
		t.Errorf("fastest round trip %v, below the 40ms the matrix guarantees", lo)
	}
	// 80 ms at most, plus room for a loaded machine.
	if lo > 80*time.Millisecond {
		t.Errorf("fastest round trip %v, above the 80ms of delay plus jitter", lo)
	}

}

func TestWritesDoNotWaitAndKeepOrder(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 100, JitterMs: 50})
	c := fromAToB(t, n, echo)

	// Many small writes, each with its own jitter, arrive in order, and
	// writing them does not wait for the delay.
	const count = 500
	start := time.Now()
	for i := range count {
		var buf [4]byte
		binary.BigEndian.PutUint32(buf[:], uint32(i))
		if _, err := c.Write(buf[:]); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took >= 100*time.Millisecond {
		t.Errorf("%d writes took %v, as long as one delay: writes wait for it", count, took)
	}
	for i := range count {
		var buf [4]byte
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint32(buf[:]); got != uint32(i) {
			t.Fatalf("message %d arrived as number %d: reordered", i, got)
		}
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("echoes arrived after %v, before one round trip (200ms)", took)
	}
}

func TestCloseUnblocksAndDelivers(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 40})
	got := make(chan string, 1)
	c := fromAToB(t, n, func(c net.Conn) {
		b, _ := io.ReadAll(c) // until the client's close arrives
		got <- string(b)
	})

	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := result(t, readErr, "Close to unblock Read"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	if s := result(t, got, "the peer to see the connection end"); s != "last words" {
		t.Errorf("peer read %q, want what was written before Close", s)
	}
	if took := time.Since(closed); took < 40*time.Millisecond {
		t.Errorf("peer saw the close after %v, before the 40ms one-way delay", took)
	}
}

func TestDeadlines(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 50})
	c := fromAToB(t, n, echo)

	// The echo is due 100ms after the write: a 20ms deadline passes first.
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 4)
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	// Clearing the deadline lets the data through, intact.
	c.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("after clearing the deadline: %q, %v", buf, err)
	}

	// A deadline set while a Read waits wakes it.
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(buf)
		readErr <- err
	}()
	c.SetReadDeadline(time.Now())
	if err := result(t, readErr, "a deadline set during Read to wake it"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read woken by a past deadline: %v", err)
	}
}

func TestWriteDeadlineWhenPeerDoesNotRead(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 1})
	stop := make(chan struct{})
	defer close(stop)
	c := fromAToB(t, n, func(net.Conn) { <-stop }) // never reads
	c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	chunk := make([]byte, 64<<10)
	for written := 0; written < 1<<30; written += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Write: %v, want a deadline error", err)
			}
			return
		}
	}
	t.Fatal("wrote 1 GiB to a peer that reads nothing: no back-pressure")
}

func TestCloseStopsGoroutines(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 10})
	srv := listen(t, echo)
	n.Register(srv.Addr().String(), "b")
	d := n.Dialer("a", nil)
	before := runtime.NumGoroutine()
	ctx := context.Background()
	for range 20 {
		c, err := d(ctx, "tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		c.Close()
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if now := runtime.NumGoroutine(); now > before {
			return fmt.Errorf("%d goroutines, %d before 20 connections were opened and closed", now, before)
		}
		return nil
	})
}

func TestDialHonoursContext(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 5000})
	srv := listen(t, echo)
	n.Register(srv.Addr().String(), "b")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := n.Dialer("a", nil)(ctx, "tcp", srv.Addr().String()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with a 50ms context over a 10s handshake: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("dial returned after %v, not when its context ended", took)
	}
}

func TestListenerDelaysRegisteredPeers(t *testing.T) {
	n := newNetwork(t, 1, &pb.Latency{From: "a", To: "b", OneWayMs: 30})
	addr := echoListener(t, n, "a")
	n.Register(addr, "a")

	// A client in region b that does not use the Network: known by its host.
	n.Register("127.0.0.2", "b")
	plain := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c := dial(t, plain.DialContext, addr)
	within(t, "round trip from a registered host", minRTT(t, c, 5), 60*time.Millisecond, 30*time.Millisecond)

	// A client whose dialer delays already: delayed once, not twice.
	c = dial(t, n.Dialer("b", nil), addr)
	within(t, "round trip through a Network dialer and listener", minRTT(t, c, 5), 60*time.Millisecond, 30*time.Millisecond)

	// An unregistered client: no delay.
	c = dial(t, (&net.Dialer{}).DialContext, addr)
	within(t, "round trip from an unregistered client", minRTT(t, c, 5), 0, 5*time.Millisecond)
}
