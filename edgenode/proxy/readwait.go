package proxy

import (
	"bufio"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// ReadMode says how the proxy reads a connection it expects an answer on.
type ReadMode int

const (
	// ReadFirst (the default) tries the read first and parks only if
	// nothing is there, as net.Conn does. It never stalls.
	ReadFirst ReadMode = iota
	// WaitFirst parks until the connection is readable and then reads; see
	// readWaiter. It saves a failed read system call twice per request
	// (about 10% of a proxied request's CPU here), at the price of a rare
	// stall of up to readWaitSafety: when data was already waiting before
	// the wait began (a pipelining client, an upstream that closed an idle
	// connection) or the runtime's poller reported readiness elsewhere.
	// Opt-in, for throughput-bound deployments that accept that tail.
	WaitFirst
)

// readWaitSafety bounds a readiness wait. A wait misses data that was
// already waiting when it began (a client that pipelines, an upstream that
// closed an idle connection) and, rarely, data whose readiness the runtime
// reported elsewhere (measured: 1 wait in 30,000 under load on two cores),
// so it must not sleep forever; after this long the caller falls back to an
// ordinary read, which finds the data. Longer waits (an idle client, a slow
// upstream) pay one extra wakeup. Shorter would make the timer fire
// needlessly on busy connections.
const readWaitSafety = 10 * time.Millisecond

// readWaiter writes what a connection has buffered and then parks until the
// connection is readable, without first trying a read. net.Conn.Read always
// tries the read system call first and, when nothing is there yet (the usual
// case just after a request was sent upstream or a response sent to the
// client), parks and reads again. On machines where a system call is
// expensive that failed read is a good part of a proxied request's cost.
//
// The write happens inside the wait on purpose. The runtime clears the
// connection's readiness flag when a wait begins; had the peer answered
// between our write and that moment, and had another thread's poller already
// collected the event, the wait would sleep through the answer. Writing
// after the flag is cleared leaves no such window.
type readWaiter struct {
	rc       syscall.RawConn
	armed    bool
	flush    *bufio.Writer
	flushErr error
	fn       func(uintptr) bool // allocated once per connection, not per wait
}

// init prepares the waiter for a connection whose socket is rc
// (plainSocket); it stays disabled (rc nil: callers read the ordinary way)
// for ReadFirst or when rc is nil.
func (w *readWaiter) init(rc syscall.RawConn, mode ReadMode) {
	w.rc = nil
	if mode != WaitFirst || rc == nil {
		return
	}
	w.rc = rc
	if w.fn == nil {
		w.fn = func(uintptr) bool {
			if !w.armed {
				return true // readable
			}
			w.armed = false
			if w.flush != nil {
				if w.flushErr = w.flush.Flush(); w.flushErr != nil {
					return true // give up waiting: the caller sees the error
				}
			}
			return false // do not read: wait for readiness
		}
	}
}

// flushAndWait writes what bw holds to nc, then parks until nc is readable
// or until passes, after which the caller's ordinary read decides. It fails
// when the write fails or nc is closed or broken.
func (w *readWaiter) flushAndWait(nc net.Conn, bw *bufio.Writer, until time.Time) error {
	nc.SetReadDeadline(until)
	w.armed, w.flush, w.flushErr = true, bw, nil
	err := w.rc.Read(w.fn)
	if w.armed {
		// The wait ended before it began (until had passed already, or nc
		// is closed): the write still has to happen.
		w.armed = false
		w.flushErr = bw.Flush()
	}
	w.flush = nil
	switch {
	case w.flushErr != nil:
		return w.flushErr
	case err == nil || errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return err
}

// plainSocket returns the socket of nc to wait on for readability, or
// nil for TLS (which may hold decrypted bytes the socket no longer shows)
// and connections that do not expose one. rc is rawConn(nc).
func plainSocket(nc net.Conn, rc syscall.RawConn) syscall.RawConn {
	if _, isTLS := nc.(interface{ NetConn() net.Conn }); isTLS {
		return nil
	}
	return rc
}

// rawConn returns the socket under nc: nc's own, or for TLS the one under
// it; nil when nc does not expose one.
func rawConn(nc net.Conn) syscall.RawConn {
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
