package cache

import (
	"log/slog"
	"sync"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Persister writes the latest state to a Store in the background. Callers
// report what they applied (Reset, Append, Advance) and return at once; the
// persister coalesces everything reported since its last write into a single
// transaction. A failed write is retried, merged with whatever arrived since.
// All methods are safe for concurrent use.
type Persister struct {
	store *Store
	log   *slog.Logger
	retry time.Duration

	mu      sync.Mutex
	pending Update
	dirty   bool
	written uint64
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// NewPersister starts a persister writing to s; retry is the delay before a
// failed write is tried again (0 means one second). The caller must Close it.
func NewPersister(s *Store, log *slog.Logger, retry time.Duration) *Persister {
	if retry <= 0 {
		retry = time.Second
	}
	rev, _ := s.Revision()
	p := &Persister{
		store:   s,
		log:     log,
		retry:   retry,
		written: rev,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go p.run()
	return p
}

// Reset reports that the whole state was replaced by st. Changes reported
// before it are dropped unwritten: st supersedes them.
func (p *Persister) Reset(st *pb.State) {
	p.mu.Lock()
	p.pending = Update{Reset: st, Revision: st.GetRevision()}
	p.signalLocked()
}

// Append reports changes applied after everything reported before.
func (p *Persister) Append(changes ...*pb.Change) {
	if len(changes) == 0 {
		return
	}
	p.mu.Lock()
	p.pending.Changes = append(p.pending.Changes, changes...)
	p.pending.Revision = max(p.pending.Revision, changes[len(changes)-1].GetRevision())
	p.signalLocked()
}

// Advance reports that the state is unchanged up to rev.
func (p *Persister) Advance(rev uint64) {
	p.mu.Lock()
	p.pending.Revision = max(p.pending.Revision, rev)
	p.signalLocked()
}

// signalLocked marks work pending, unlocks and wakes the writer.
func (p *Persister) signalLocked() {
	p.dirty = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Written is the revision of the last successful write (or of the file when
// the persister started).
func (p *Persister) Written() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written
}

// Close writes what is pending (one attempt) and stops the writer. It does
// not close the Store.
func (p *Persister) Close() {
	close(p.stop)
	<-p.done
}

func (p *Persister) run() {
	defer close(p.done)
	var retry <-chan time.Time
	for {
		select {
		case <-p.wake:
		case <-retry:
		case <-p.stop:
			p.flush()
			return
		}
		retry = nil
		if !p.flush() {
			retry = time.After(p.retry)
		}
	}
}

// flush writes what is pending; false when the write failed (it stays pending).
func (p *Persister) flush() bool {
	p.mu.Lock()
	if !p.dirty {
		p.mu.Unlock()
		return true
	}
	u := p.pending
	p.pending, p.dirty = Update{}, false
	p.mu.Unlock()

	if u.Reset == nil && len(u.Changes) == 0 && u.revision() <= p.Written() {
		return true
	}
	err := p.store.Write(u)

	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.log.Error("writing routing cache failed; will retry", "revision", u.revision(), "err", err)
		// Put the failed update back in front of what arrived meanwhile,
		// unless a reset arrived that supersedes it.
		if p.pending.Reset == nil {
			u.Changes = append(u.Changes, p.pending.Changes...)
			u.Revision = max(u.Revision, p.pending.Revision)
			p.pending = u
		}
		p.dirty = true
		return false
	}
	p.written = u.revision()
	return true
}
