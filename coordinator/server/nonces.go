package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Group commit of nonce checks. Every CheckNonces call on the leader hands
// its checks to the batcher; a few proposer goroutines each take whatever
// is waiting (up to maxBatchChecks) and propose it as one CheckNoncesOp, so
// that under load many calls share one raft entry, and while entries are in
// flight the next batch fills. hashicorp/raft then writes the entries
// queued together in one disk write.

const (
	// maxBatchChecks bounds the checks of one raft entry (about 100 bytes each).
	maxBatchChecks = 4096
	// nonceProposers is how many batches may be in flight at once: enough to
	// overlap one batch's commit with the next one's apply and encode.
	nonceProposers = 4
	// maxChecksPerCall bounds one CheckNonces request.
	maxChecksPerCall = 1024
	// proposeTimeout bounds one batch's commit: without a quorum the calls
	// fail (UNAVAILABLE) instead of waiting for one.
	proposeTimeout = 5 * time.Second
)

type nonceCall struct {
	ctx    context.Context
	checks []*pb.NonceCheck
	done   chan nonceAnswer
}

type nonceAnswer struct {
	fresh []bool
	err   error
}

type nonceBatcher struct {
	s     *Server
	calls chan *nonceCall
	once  sync.Once
}

func (b *nonceBatcher) start() {
	b.once.Do(func() {
		for range nonceProposers {
			go b.run()
		}
	})
}

// run proposes batches until the server stops.
func (b *nonceBatcher) run() {
	for {
		var first *nonceCall
		select {
		case <-b.s.stopping.Done():
			return
		case first = <-b.calls:
		}
		calls := []*nonceCall{first}
		n := len(first.checks)
	fill:
		for n < maxBatchChecks {
			select {
			case c := <-b.calls:
				calls = append(calls, c)
				n += len(c.checks)
			default:
				break fill
			}
		}
		b.propose(calls, n)
	}
}

// propose commits one batch and answers every call in it. Calls whose
// context ended while waiting are left out: their edge retries with the
// same check ids, which is safe either way.
func (b *nonceBatcher) propose(calls []*nonceCall, n int) {
	checks := make([]*pb.NonceCheck, 0, n)
	live := calls[:0]
	for _, c := range calls {
		if c.ctx.Err() != nil {
			c.done <- nonceAnswer{err: c.ctx.Err()}
			continue
		}
		live = append(live, c)
		checks = append(checks, c.checks...)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.s.stopping, proposeTimeout)
	defer cancel()
	res, err := b.s.raft.Propose(ctx, &pb.Command{Op: &pb.Command_CheckNonces{CheckNonces: &pb.CheckNoncesOp{Checks: checks}}})
	if err == nil && res.GetError() != nil {
		err = commandStatus(res.GetError())
	} else if err != nil {
		err = toStatus(err)
	}
	if err == nil && len(res.GetFresh()) != len(checks) {
		err = fmt.Errorf("nonce batch of %d checks got %d answers", len(checks), len(res.GetFresh()))
	}
	at := 0
	for _, c := range live {
		if err != nil {
			c.done <- nonceAnswer{err: err}
			continue
		}
		c.done <- nonceAnswer{fresh: res.GetFresh()[at : at+len(c.checks)]}
		at += len(c.checks)
	}
}

// CheckNonces implements EdgeService. It runs on the leader (forwardUnary
// relays it there).
func (s *Server) CheckNonces(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
	checks := req.GetChecks()
	if len(checks) == 0 {
		return &pb.CheckNoncesResponse{}, nil
	}
	if len(checks) > maxChecksPerCall {
		return nil, invalidArg("checks", "%d checks in one call; at most %d", len(checks), maxChecksPerCall)
	}
	for i, c := range checks {
		switch {
		case c.GetKeyId() == "":
			return nil, invalidArg(fmt.Sprintf("checks[%d].key_id", i), "key_id is required")
		case c.GetNonce() == "":
			return nil, invalidArg(fmt.Sprintf("checks[%d].nonce", i), "nonce is required")
		case c.GetCheckId() == "":
			return nil, invalidArg(fmt.Sprintf("checks[%d].check_id", i), "check_id is required: it makes retries safe")
		}
	}
	s.nonces.start()
	call := &nonceCall{ctx: ctx, checks: checks, done: make(chan nonceAnswer, 1)}
	select {
	case s.nonces.calls <- call:
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
	select {
	case a := <-call.done:
		if a.err != nil {
			return nil, toStatus(a.err)
		}
		return &pb.CheckNoncesResponse{Fresh: a.fresh}, nil
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
}
