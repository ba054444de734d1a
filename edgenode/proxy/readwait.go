package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// readWaitSafety bounds a readiness wait. The runtime forgets a readiness
// event that arrived before the wait began, so such a wait could otherwise
// sleep forever; after this long the caller falls back to an ordinary read,
// which finds the data. Requests slower than this pay one extra wakeup.
const readWaitSafety = 2 * time.Millisecond

// readWaiter parks until a connection is readable without first trying a
// read. net.Conn.Read always tries the read system call first and, when
// nothing is there yet (the usual case just after a request was sent
// upstream, or a response sent to the client), parks and reads again. On
// machines where a system call is expensive that failed read is a good part
// of a proxied request's cost; waiting first saves it.
type readWaiter struct {
	rc    syscall.RawConn
	armed bool
	fn    func(uintptr) bool // allocated once per connection, not per wait
}

// init prepares the waiter for nc; it stays disabled (wait does nothing)
// when nc does not expose its descriptor (TLS, wrapped connections).
func (w *readWaiter) init(nc net.Conn) {
	if _, isTLS := nc.(interface{ NetConn() net.Conn }); isTLS {
		// TLS may hold decrypted bytes the socket no longer shows.
		w.rc = nil
		return
	}
	if w.rc = rawConn(nc); w.rc == nil {
		return
	}
	if w.fn == nil {
		w.fn = func(uintptr) bool {
			if w.armed {
				w.armed = false
				return false // do not read: wait for readiness
			}
			return true
		}
	}
}

// wait parks until nc is readable, its deadline passes (then the caller's
// ordinary read decides), or it fails. It returns false when nc is closed
// or broken.
func (w *readWaiter) wait(nc net.Conn, until time.Time) bool {
	if w.rc == nil {
		return true
	}
	nc.SetReadDeadline(until)
	w.armed = true
	err := w.rc.Read(w.fn)
	return err == nil || errors.Is(err, os.ErrDeadlineExceeded)
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
