package raftstore

import (
	"context"
	"sync"
)

// indexNotifier lets readers wait for "applied >= n" without polling (etcd's
// wait, rqlite's ready targets). Advance is cheap: it closes one channel that
// every waiter selects on, then installs a fresh one.
type indexNotifier struct {
	mu    sync.Mutex
	index uint64
	ch    chan struct{}
}

func newIndexNotifier(start uint64) *indexNotifier {
	return &indexNotifier{index: start, ch: make(chan struct{})}
}

func (n *indexNotifier) advance(index uint64) {
	n.mu.Lock()
	if index <= n.index {
		n.mu.Unlock()
		return
	}
	n.index = index
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

func (n *indexNotifier) current() (uint64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.index, n.ch
}

// wait blocks until the index reaches target or ctx is done.
func (n *indexNotifier) wait(ctx context.Context, target uint64) error {
	for {
		idx, ch := n.current()
		if idx >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
