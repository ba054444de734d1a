package devcluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/edgecell/edgecell/internal/freeport"
)

// pollInterval is how often waits re-check their condition.
const pollInterval = 50 * time.Millisecond

// poll calls cond until it holds, or returns timeout() wrapped with ctx's error
// once ctx ends.
func poll(ctx context.Context, cond func() bool, timeout func() error) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", timeout(), ctx.Err())
		case <-t.C:
		}
	}
}

// loopback is 127.0.0.1:base+i, or 127.0.0.1:0 (any free port) when base is 0.
func loopback(base, i int) string {
	if base == 0 {
		return "127.0.0.1:0"
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i))
}

// freeLoopbackAddr finds a port nothing listens on now, below the ephemeral
// range (see freeport), so that a coordinator restarted on it finds it free.
func freeLoopbackAddr() (string, error) { return freeport.Loopback() }
