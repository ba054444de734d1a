package simnet

import (
	"bytes"
	"net"
	"os"
	"sync"
	"time"
)

// maxQueued bounds the bytes in flight in each direction of a delayed
// connection. Beyond it a Write blocks, and the socket is not read, as a full
// TCP window would behave: a slow reader slows its writer instead of growing
// memory without bound.
const maxQueued = 1 << 20

// closeLinger bounds how long a closed connection keeps trying to deliver
// what was written before Close to a peer that stopped reading.
const closeLinger = 2 * time.Second

// chunk is data (or the end of the stream) in flight in one direction.
type chunk struct {
	data []byte
	// err ends the stream after data (inbound: the socket's read error, io.EOF
	// included).
	err error
	// close (outbound) closes the socket once everything before it is delivered.
	close bool
	due   time.Time
}

// queue is one direction's chunks in due order, plus that direction's
// deadline. Every change closes and replaces changed, waking whoever waits.
type queue struct {
	mu       sync.Mutex
	items    []chunk
	bytes    int
	lastDue  time.Time
	deadline time.Time
	// err fails later Writes (outbound: the socket's write error) and Reads;
	// a partition (cut) sets both directions'.
	err     error
	changed chan struct{}
}

func (q *queue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// pushLocked appends c, due d from now but never before the chunk ahead of it:
// jitter delays data, it never reorders it.
func (q *queue) pushLocked(c chunk, d time.Duration) {
	c.due = time.Now().Add(d)
	if c.due.Before(q.lastDue) {
		c.due = q.lastDue
	}
	q.lastDue = c.due
	q.items = append(q.items, c)
	q.bytes += len(c.data)
	q.notifyLocked()
}

func (q *queue) popLocked() chunk {
	c := q.items[0]
	q.items[0] = chunk{}
	q.items = q.items[1:]
	q.bytes -= len(c.data)
	q.notifyLocked()
	return c
}

func (q *queue) setDeadline(t time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deadline = t
	q.notifyLocked()
}

// delayConn delays both directions of a connection. Writes are queued and
// written to the socket by one goroutine when due; the socket is read by
// another goroutine and the data handed to Read when due. Both goroutines end
// after Close, once what was written before it is delivered (bounded by
// closeLinger for a peer that does not read).
type delayConn struct {
	net.Conn
	outDelay, inDelay func() time.Duration
	onClose           func()

	out, in queue
	// done is closed by Close: Read and Write fail from then on.
	done      chan struct{}
	closeOnce sync.Once
}

func newDelayConn(conn net.Conn, outDelay, inDelay func() time.Duration, onClose func()) *delayConn {
	c := &delayConn{Conn: conn, outDelay: outDelay, inDelay: inDelay, onClose: onClose, done: make(chan struct{})}
	c.out.changed = make(chan struct{})
	c.in.changed = make(chan struct{})
	go c.writeLoop()
	go c.readLoop()
	return c
}

// waitLocked releases q.mu until q changes, the connection is closed or until
// passes (zero: no limit), then takes it again.
func (c *delayConn) waitLocked(q *queue, until time.Time) {
	ch := q.changed
	q.mu.Unlock()
	defer q.mu.Lock()
	var timeout <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
	case <-c.done:
	case <-timeout:
	}
}

func (c *delayConn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *delayConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Read returns data once it is due, in order.
func (c *delayConn) Read(p []byte) (int, error) {
	q := &c.in
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if c.closed() {
			return 0, c.opErr("read", net.ErrClosed)
		}
		if q.err != nil {
			return 0, q.err
		}
		now := time.Now()
		if len(q.items) > 0 && !now.Before(q.items[0].due) {
			head := &q.items[0]
			if len(head.data) == 0 {
				return 0, head.err // kept: the end of the stream repeats
			}
			n := copy(p, head.data)
			head.data = head.data[n:]
			q.bytes -= n
			if len(head.data) == 0 && head.err == nil {
				q.popLocked()
			} else {
				q.notifyLocked()
			}
			return n, nil
		}
		if !q.deadline.IsZero() && !now.Before(q.deadline) {
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		until := q.deadline
		if len(q.items) > 0 && (until.IsZero() || q.items[0].due.Before(until)) {
			until = q.items[0].due
		}
		c.waitLocked(q, until)
	}
}

// Write queues a copy of p for delivery one one-way delay from now. It blocks
// only while maxQueued bytes are in flight.
func (c *delayConn) Write(p []byte) (int, error) {
	q := &c.out
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		switch {
		case c.closed():
			return 0, c.opErr("write", net.ErrClosed)
		case q.err != nil:
			return 0, q.err
		case q.bytes < maxQueued:
			if len(p) > 0 {
				q.pushLocked(chunk{data: bytes.Clone(p)}, c.outDelay())
			}
			return len(p), nil
		case !q.deadline.IsZero() && !time.Now().Before(q.deadline):
			return 0, c.opErr("write", os.ErrDeadlineExceeded)
		}
		c.waitLocked(q, q.deadline)
	}
}

// writeLoop writes each outbound chunk to the socket when it is due. It runs
// past Close, until the close marker, so that what was written before Close
// still arrives, one delay later, followed by the end of the stream.
func (c *delayConn) writeLoop() {
	q := &c.out
	for {
		q.mu.Lock()
		for len(q.items) == 0 || time.Now().Before(q.items[0].due) {
			ch := q.changed
			var timeout <-chan time.Time
			var t *time.Timer
			if len(q.items) > 0 {
				t = time.NewTimer(time.Until(q.items[0].due))
				timeout = t.C
			}
			q.mu.Unlock()
			select { // not c.done: Close pushes the marker, which changes q
			case <-ch:
			case <-timeout:
			}
			if t != nil {
				t.Stop()
			}
			q.mu.Lock()
		}
		ch := q.popLocked()
		q.mu.Unlock()
		if ch.close {
			c.Conn.Close()
			return
		}
		if _, err := c.Conn.Write(ch.data); err != nil {
			q.mu.Lock()
			if q.err == nil { // a cut's error stays
				q.err = err
			}
			q.notifyLocked()
			q.mu.Unlock()
			c.Conn.Close() // a broken stream: let readLoop see it too
			return
		}
	}
}

// readLoop reads the socket and queues what arrives, and finally the error
// that ended the stream, each due one delay after it arrived.
func (c *delayConn) readLoop() {
	q := &c.in
	buf := make([]byte, 32<<10)
	for {
		q.mu.Lock()
		for q.bytes >= maxQueued {
			if c.closed() {
				q.mu.Unlock()
				return
			}
			c.waitLocked(q, time.Time{})
		}
		q.mu.Unlock()
		n, err := c.Conn.Read(buf)
		q.mu.Lock()
		if n > 0 {
			q.pushLocked(chunk{data: bytes.Clone(buf[:n])}, c.inDelay())
		}
		if err != nil {
			q.pushLocked(chunk{err: err}, c.inDelay())
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

// cut is a partition: what is in flight both ways is dropped, pending and
// later Reads and Writes fail with err, and the socket is closed at once, so
// the peer sees the connection end. Close is still the owner's to call.
func (c *delayConn) cut(err error) {
	for _, q := range []*queue{&c.in, &c.out} {
		q.mu.Lock()
		clear(q.items)
		q.items, q.bytes, q.lastDue = q.items[:0], 0, time.Time{}
		if q.err == nil {
			op := "read"
			if q == &c.out {
				op = "write"
			}
			q.err = c.opErr(op, err)
		}
		if q == &c.out { // ends writeLoop
			q.pushLocked(chunk{close: true}, 0)
		} else {
			q.notifyLocked() // wakes readLoop waiting for room
		}
		q.mu.Unlock()
	}
	c.Conn.Close()
}

// Close fails pending and later Reads and Writes at once. What was written
// before it still reaches the peer one delay later, and then the peer sees
// the connection end.
func (c *delayConn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		close(c.done)
		q := &c.out
		q.mu.Lock()
		q.pushLocked(chunk{close: true}, c.outDelay())
		// A peer that stopped reading must not hold the socket and the
		// goroutines forever.
		c.Conn.SetWriteDeadline(q.lastDue.Add(closeLinger))
		q.mu.Unlock()
		if c.onClose != nil {
			c.onClose()
		}
	})
	if !first {
		return c.opErr("close", net.ErrClosed)
	}
	return nil
}

// SetDeadline sets both deadlines. They bound Read's wait for due data and
// Write's wait for room; the socket's own deadlines are left alone.
func (c *delayConn) SetDeadline(t time.Time) error {
	if c.closed() {
		return c.opErr("set deadline", net.ErrClosed)
	}
	c.in.setDeadline(t)
	c.out.setDeadline(t)
	return nil
}

// SetReadDeadline bounds Reads; see SetDeadline.
func (c *delayConn) SetReadDeadline(t time.Time) error {
	if c.closed() {
		return c.opErr("set deadline", net.ErrClosed)
	}
	c.in.setDeadline(t)
	return nil
}

// SetWriteDeadline bounds Writes; see SetDeadline.
func (c *delayConn) SetWriteDeadline(t time.Time) error {
	if c.closed() {
		return c.opErr("set deadline", net.ErrClosed)
	}
	c.out.setDeadline(t)
	return nil
}
