package watch

import (
	"context"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// cursor is where one stream stands.
type cursor struct {
	pos   uint64 // the revision the watcher holds: its from_revision, then the last one sent
	reset bool   // the next message must be a reset
	// cluster is the cluster the watcher's state came from ("" unknown);
	// foreign: it is not the hub's, so pos names another history and the
	// reset must go out even if it is older than pos.
	cluster string
	foreign bool
	// inParts: the watcher takes resets in parts; parts are those of the
	// reset being sent, part the next one's index.
	inParts bool
	parts   []*pb.WatchResponse
	part    int
	// wire is the encoding of the message next returned, when it is a
	// change's shared one (Hub.singles); nil: send encodes it.
	wire []byte
}

// Serve runs one watch stream until ctx is done (it returns ctx.Err()) or
// send fails (it returns send's error unchanged). send is called from this
// goroutine only and may block as long as it likes without affecting
// Publish or other streams.
//
// What the watcher receives:
//   - from == 0, or a from older than the buffer covers (after a Reset of
//     the hub, anything below the revision it reset to): a reset carrying
//     the whole state (in parts of at most PartBytes, one after the other,
//     when the request has reset_in_parts), then the changes after it. Revisions name the same
//     raft history on every member, so a watcher at or above the revision
//     a Reset moved to needs no reset;
//   - otherwise the buffered changes after from, in order, at most MaxBatch
//     per message, then each new change as it is published;
//   - from above the hub's revision (the edge got ahead through another,
//     more up-to-date member): nothing but progress until this member
//     catches up, then the changes after from. A reset never moves a watcher
//     backwards;
//   - cluster names the cluster the watcher's state came from ("" for
//     none). When the hub's cluster id (SetClusterID) is another, the watcher
//     gets a reset whatever its revision: revisions of two clusters (or of
//     a cluster and its rebuild) do not compare. While the hub knows no id,
//     a watcher naming one gets nothing but progress at its own revision
//     until the hub learns it;
//   - progress_revision, which is the revision the watcher holds, at once
//     when the stream starts with nothing to send, and after every
//     ProgressInterval without a message.
//
// A watcher that falls behind the buffer while its send is blocked gets a
// reset when it comes back.
func (h *Hub) Serve(ctx context.Context, req *pb.WatchRequest, send func(msg *pb.WatchResponse, wire []byte) error) error {
	h.watchers.Add(1)
	defer h.watchers.Add(-1)

	from := req.GetFromRevision()
	c := &cursor{pos: from, reset: from == 0, cluster: req.GetClusterId(), inParts: req.GetResetInParts()}

	progress := time.NewTimer(h.opts.ProgressInterval)
	defer progress.Stop()
	started := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, wake := h.next(c)
		if msg == nil && !started {
			msg = progressMessage(c.pos)
		}
		if msg != nil {
			wire := c.wire
			c.wire = nil
			if err := send(msg, wire); err != nil {
				return err
			}
			started = true
			progress.Reset(h.opts.ProgressInterval)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-progress.C:
			if err := send(progressMessage(c.pos), nil); err != nil {
				return err
			}
			progress.Reset(h.opts.ProgressInterval)
		}
	}
}

// next returns the message to send to the watcher at c and advances c past
// it, or returns nil and the channel that closes when there may be more.
func (h *Hub) next(c *cursor) (*pb.WatchResponse, <-chan struct{}) {
	if c.parts != nil {
		// The rest of a reset in parts, before anything else.
		msg := c.parts[c.part]
		if c.part++; c.part == len(c.parts) {
			c.parts = nil
		}
		return msg, nil
	}
	batch, single, wire, wake, hold := h.poll(c)
	if hold {
		return nil, wake
	}
	if batch != nil {
		c.pos = batch[len(batch)-1].GetRevision()
		if single != nil {
			c.wire = wire
			return single, nil
		}
		return &pb.WatchResponse{Kind: &pb.WatchResponse_Changes{Changes: &pb.ChangeBatch{Changes: batch}}}, nil
	}
	if !c.reset {
		return nil, wake
	}
	st := h.resetState()
	if c.foreign && st.GetClusterId() == "" {
		// The hub knows its id (persisted) but the state does not carry it
		// yet (a member replaying a log from before the id): a reset without
		// it would not tell the watcher that its history changed. Wait for
		// the change that sets it.
		return nil, wake
	}
	c.reset = false
	if st.GetRevision() < c.pos && !c.foreign {
		// This member is behind the watcher: keep the watcher's newer state
		// and wait for the changes after it.
		return nil, wake
	}
	c.pos, c.cluster, c.foreign = st.GetRevision(), st.GetClusterId(), false
	if c.inParts {
		c.parts, c.part = h.partsOf(st), 0
		return h.next(c)
	}
	return &pb.WatchResponse{Kind: &pb.WatchResponse_Reset_{Reset_: st}}, nil
}

// poll decides, under the hub lock, whether c must wait for the hub's
// cluster id (hold) or needs a reset, and otherwise copies out the next batch
// of changes after c.pos (nil when there is none).
func (h *Hub) poll(c *cursor) (batch []*pb.Change, single *pb.WatchResponse, wire []byte, wake <-chan struct{}, hold bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.cluster != "" && c.cluster != h.cluster {
		if h.cluster == "" {
			return nil, nil, nil, h.wake, true // which history pos belongs to is not known yet
		}
		c.reset, c.foreign = true, true
	}
	if c.pos < h.base {
		c.reset = true
	}
	if c.reset || c.pos >= h.rev {
		return nil, nil, nil, h.wake, false
	}
	// The first held change above c.pos; it exists since base <= pos < rev.
	lo, hi := 0, h.n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if h.at(mid).GetRevision() <= c.pos {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// At most MaxBatch changes, and for a watcher that takes resets in parts
	// at most PartBytes of them: a change larger than that alone (an apply
	// of a big config) goes to it as a reset in parts instead, at a
	// revision at least as new, so that no message grows with the config.
	n, bytes := 0, 0
	for n < min(h.n-lo, h.opts.MaxBatch) {
		size := h.sizes[(h.head+lo+n)%len(h.ring)]
		if c.inParts && n > 0 && bytes+size > PartBytes {
			break
		}
		if c.inParts && n == 0 && size > PartBytes {
			c.reset = true
			return nil, nil, nil, h.wake, false
		}
		bytes += size
		n++
	}
	if i := (h.head + lo) % len(h.ring); n == 1 && h.singles[i] != nil {
		// The usual case, a caught-up watcher: the change's shared message.
		return []*pb.Change{h.ring[i]}, h.singles[i], h.wires[i], h.wake, false
	}
	batch = make([]*pb.Change, n)
	for i := range batch {
		batch[i] = h.at(lo + i)
	}
	return batch, nil, nil, h.wake, false
}

func progressMessage(rev uint64) *pb.WatchResponse {
	return &pb.WatchResponse{Kind: &pb.WatchResponse_ProgressRevision{ProgressRevision: rev}}
}
