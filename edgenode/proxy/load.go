package proxy

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Load is what the Server carries now against its limits.
type Load struct {
	// Conns are the client connections open, MaxConns the cap.
	Conns, MaxConns int
	// HeldBodyBytes is the memory held for signed request bodies in
	// flight, MaxHeldBodyBytes the budget.
	HeldBodyBytes, MaxHeldBodyBytes int64
	// AcceptErrors counts accepts that failed and were retried (EMFILE,
	// ENFILE, ENOBUFS...); LastAcceptError is when the last one did.
	AcceptErrors    uint64
	LastAcceptError time.Time
	// OverBudget counts signed requests refused 503 because holding their
	// body would have taken the edge past MaxHeldBodyBytes.
	OverBudget uint64
}

// Load reports the Server's load.
func (s *Server) Load() Load {
	l := Load{
		Conns: int(s.open.Load()), MaxConns: cap(s.slots),
		HeldBodyBytes: s.heldBytes.Load(), MaxHeldBodyBytes: s.cfg.MaxHeldBodyBytes,
		AcceptErrors: s.acceptErrs.Load(), OverBudget: s.overBudget.Load(),
	}
	if ns := s.lastAcceptE.Load(); ns != 0 {
		l.LastAcceptError = time.Unix(0, ns)
	}
	return l
}

// overloadMemory is how long an accept failure keeps the Server reported
// overloaded: long enough for a readiness probe to see it.
const overloadMemory = 10 * time.Second

// Overloaded says why the Server should not be sent more traffic now, or
// "" when it can take it: its connections at the cap, accepts failing
// (out of file descriptors) within the last 10 s, or held bodies past 90%
// of their budget. The edge's /readyz answers 503 with it.
func (l Load) Overloaded(now time.Time) string {
	switch {
	case l.Conns >= l.MaxConns:
		return fmt.Sprintf("client connections at the cap (%d)", l.MaxConns)
	case !l.LastAcceptError.IsZero() && now.Sub(l.LastAcceptError) < overloadMemory:
		return fmt.Sprintf("accepting connections failed %s ago (out of file descriptors?)", now.Sub(l.LastAcceptError).Round(time.Millisecond))
	case l.HeldBodyBytes > l.MaxHeldBodyBytes/10*9:
		return fmt.Sprintf("held request bodies at %d of %d bytes", l.HeldBodyBytes, l.MaxHeldBodyBytes)
	}
	return ""
}

// temporaryAcceptError reports whether accept failed for want of a
// resource that frees up (file descriptors, buffers, a connection aborted
// before it was accepted), after which accepting should pause, not stop.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// defaultMaxConns is half the process's file descriptor limit (which the Go
// runtime raised to the hard limit at start), the rest being left to
// upstream connections, coordinators and files; 4096 when it cannot be read.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 4096
	}
	return int(min(rl.Cur/2, 1<<22))
}

// reserveHeld takes n bytes of the held-body budget, or reports that they
// would take the edge past it.
func (s *Server) reserveHeld(n int64) bool {
	if s.heldBytes.Add(n) > s.cfg.MaxHeldBodyBytes {
		s.heldBytes.Add(-n)
		return false
	}
	return true
}

func (s *Server) releaseHeld(n int64) { s.heldBytes.Add(-n) }
