package watch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// acker sends acknowledgements for one session: at most one Ack in flight,
// always carrying the latest revision, so a burst of changes costs one or
// two Acks rather than one per revision.
type acker struct {
	client  pb.EdgeServiceClient
	edge    string
	region  string
	timeout time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	applied uint64 // latest applied revision to report
	reject  *pb.AckRequest
	sent    uint64 // latest applied revision the coordinator confirmed
	beat    bool   // send even if nothing new was applied (liveness)
	flushed chan struct{}
	wake    chan struct{}
	done    chan struct{}
}

func newAcker(ctx context.Context, client pb.EdgeServiceClient, edge, region string, timeout time.Duration, log *slog.Logger) *acker {
	a := &acker{client: client, edge: edge, region: region, timeout: timeout, log: log,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go a.run(ctx)
	return a
}

// ack reports rev as applied. It does not block.
func (a *acker) ack(rev uint64) {
	a.mu.Lock()
	a.applied = max(a.applied, rev)
	a.mu.Unlock()
	a.signal()
}

// heartbeat reports rev as applied even when the coordinator already knows
// it, so that an idle edge's last ack stays recent (operators read it as
// liveness). It does not block.
func (a *acker) heartbeat(rev uint64) {
	a.mu.Lock()
	a.applied = max(a.applied, rev)
	a.beat = true
	a.mu.Unlock()
	a.signal()
}

// rejectAndFlush reports that rejected could not be applied (the edge stays
// at applied) and waits until that report was sent or failed, or ctx ends.
func (a *acker) rejectAndFlush(ctx context.Context, applied, rejected uint64, reason string) {
	a.mu.Lock()
	a.applied = max(a.applied, applied)
	a.reject = &pb.AckRequest{RejectedRevision: rejected, RejectReason: reason}
	ch := make(chan struct{})
	a.flushed = ch
	a.mu.Unlock()
	a.signal()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (a *acker) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// wait stops accepting work and waits for the sender to finish.
func (a *acker) wait() { <-a.done }

func (a *acker) run(ctx context.Context) {
	defer close(a.done)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-retry:
		}
		retry = nil
		a.mu.Lock()
		req := &pb.AckRequest{Edge: a.edge, Region: a.region, AppliedRevision: a.applied}
		if a.reject != nil {
			req.RejectedRevision, req.RejectReason = a.reject.RejectedRevision, a.reject.RejectReason
		}
		flushed := a.flushed
		needed := a.reject != nil || a.applied > a.sent || a.beat
		a.beat = false
		a.mu.Unlock()
		if !needed {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, a.timeout)
		_, err := a.client.Ack(actx, req)
		cancel()
		a.mu.Lock()
		if err == nil {
			a.sent = max(a.sent, req.AppliedRevision)
			if req.RejectedRevision != 0 && a.reject != nil && a.reject.RejectedRevision == req.RejectedRevision {
				a.reject = nil
			}
		}
		if flushed != nil && a.flushed == flushed {
			close(flushed)
			a.flushed = nil
		}
		a.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("ack failed; will retry", "revision", req.AppliedRevision, "err", err)
			retry = time.After(a.timeout / 4)
		}
	}
}
