package report

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxHold is how long a batch whose outcome is unknown keeps being resent
// before it is dropped: what it says is old news by then, and the
// coordinators remember a batch id for an hour
// (coordinator/state.ReportRetryHorizon), well past it.
const MaxHold = 10 * time.Minute

// outbox sends one kind of report (outcomes, health results) in numbered
// batches, so that the coordinators count each batch once however often it
// is sent. Every batch gets a random non-zero id. A batch whose outcome is
// unknown (a timeout, UNAVAILABLE, a lost connection: it may have
// committed) is held and resent as it is, with the same id, before anything
// newer; what arrives meanwhile waits in its source (the gates, the pending
// results) for a later batch, so no count is ever in two batches. A batch
// the coordinators refused counted nothing, so its content goes back to the
// source and travels in the next batch, under a new id. Safe for
// concurrent use; sends are serialised.
type outbox[B any] struct {
	what string // "outcome", "health"; for logs
	log  *slog.Logger
	now  func() time.Time
	// send sends b as batch id.
	send func(ctx context.Context, b B, id uint64) error
	// giveBack returns a refused batch's content to its source.
	giveBack func(b B)

	mu   sync.Mutex
	held *heldBatch[B]
}

// heldBatch is a batch sent without a known outcome.
type heldBatch[B any] struct {
	batch B
	id    uint64
	since time.Time // when it was first sent
}

// flush resends the held batch, if any, and once that is settled sends what
// take returns (ok false: nothing to send) as a new batch. It returns the
// first failure, after which nothing newer is sent.
func (o *outbox[B]) flush(ctx context.Context, take func() (B, bool)) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if h := o.held; h != nil {
		if age := o.now().Sub(h.since); age > MaxHold {
			o.log.Warn(o.what+" batch undelivered for too long; dropping it", "batch", h.id, "age", age.Round(time.Second))
			o.held = nil
		} else if err := o.deliver(ctx, h.batch, h.id, h.since); err != nil {
			return err
		}
	}
	b, ok := take()
	if !ok {
		return nil
	}
	return o.deliver(ctx, b, newBatchID(), o.now())
}

// deliver sends b as batch id and settles it: done, given back (refused)
// or held (outcome unknown).
func (o *outbox[B]) deliver(ctx context.Context, b B, id uint64, since time.Time) error {
	err := o.send(ctx, b, id)
	switch {
	case err == nil:
		o.held = nil
	case refused(err):
		o.held = nil
		o.giveBack(b)
		o.log.Warn(o.what+" report refused; its content goes into the next batch", "batch", id, "err", err)
	default:
		o.held = &heldBatch[B]{batch: b, id: id, since: since}
		o.log.Warn(o.what+" report failed; resending the same batch next time", "batch", id, "err", err)
	}
	return err
}

// hasHeld reports whether a batch awaits resending, and its id.
func (o *outbox[B]) hasHeld() (uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.held == nil {
		return 0, false
	}
	return o.held.id, true
}

// refused reports whether err means the batch certainly counted nothing:
// it was never sent, or a coordinator refused it before or when applying
// it. Any other failure may hide a commit.
func refused(err error) bool {
	if errors.Is(err, ErrNoCoordinator) {
		return true
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.OutOfRange,
		codes.ResourceExhausted, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	}
	return false
}

// newBatchID draws a random non-zero batch id.
func newBatchID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}
