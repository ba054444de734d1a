package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Group commit of edge reports. Every edge sends its outcome and health
// reports about once a second; one raft entry each would cost a thousand
// entries a second at a thousand edges before any real change. On the
// leader, ReportOutcomes and ReportHealth hand their op to the batcher; a
// few proposer goroutines each take whatever is waiting (up to
// maxBatchReports) and propose it as one ReportBatchOp, which the state
// machine applies as the reports one by one would be (the same breaker and
// health transitions, one fleet state at one revision for every edge),
// answering each. A lone report goes as its own op, and when a member's
// binary does not apply ReportBatchOp yet (a rolling upgrade) every report
// goes as its own op.

const (
	// maxBatchReports bounds the reports of one raft entry (a report is
	// a few hundred bytes).
	maxBatchReports = 1024
	// reportProposers is how many batches may be in flight at once.
	reportProposers = 2
)

// reportCall is one edge's report waiting for its batch: exactly one of
// outcomes and health is set.
type reportCall struct {
	ctx      context.Context
	outcomes *pb.ReportOutcomesOp
	health   *pb.ReportHealthOp
	done     chan reportAnswer
}

type reportAnswer struct {
	rev uint64
	err error
}

type reportBatcher struct {
	s         *Server
	calls     chan *reportCall
	proposers int // reportProposers
	once      sync.Once
}

func (b *reportBatcher) start() {
	b.once.Do(func() {
		for range b.proposers {
			go b.run()
		}
	})
}

// submit hands one report to the batcher and waits for its answer: the
// revision after it, or a gRPC status.
func (b *reportBatcher) submit(ctx context.Context, c *reportCall) (uint64, error) {
	b.start()
	c.ctx, c.done = ctx, make(chan reportAnswer, 1)
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return 0, toStatus(ctx.Err())
	}
	select {
	case a := <-c.done:
		return a.rev, a.err
	case <-ctx.Done():
		return 0, toStatus(ctx.Err())
	}
}

// run proposes batches until the server stops.
func (b *reportBatcher) run() {
	for {
		var first *reportCall
		select {
		case <-b.s.stopping.Done():
			return
		case first = <-b.calls:
		}
		calls := []*reportCall{first}
	fill:
		for len(calls) < maxBatchReports {
			select {
			case c := <-b.calls:
				calls = append(calls, c)
			default:
				break fill
			}
		}
		b.propose(calls)
	}
}

// propose commits one batch and answers every call in it. Calls whose
// context ended while waiting are left out: their edge sends the report
// again with the same batch id, which the state counts once.
func (b *reportBatcher) propose(calls []*reportCall) {
	live := calls[:0]
	for _, c := range calls {
		if c.ctx.Err() != nil {
			c.done <- reportAnswer{err: toStatus(c.ctx.Err())}
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	if len(live) > 1 {
		err := b.proposeBatch(live)
		if !errors.Is(err, raftstore.ErrOpUnsupported) {
			return
		}
	}
	for _, c := range live { // one, or members that do not apply ReportBatchOp yet
		rev, err := b.proposeOne(c)
		c.done <- reportAnswer{rev: rev, err: err}
	}
}

// proposeBatch proposes calls as one ReportBatchOp and answers them, unless
// a member does not apply that op (ErrOpUnsupported, nothing answered).
func (b *reportBatcher) proposeBatch(calls []*reportCall) error {
	op := &pb.ReportBatchOp{}
	for _, c := range calls {
		if c.outcomes != nil {
			op.Outcomes = append(op.Outcomes, c.outcomes)
		} else {
			op.Health = append(op.Health, c.health)
		}
	}
	ctx, cancel := context.WithTimeout(b.s.stopping, proposeTimeout)
	res, err := b.s.propose(ctx, &pb.Command{Op: &pb.Command_ReportBatch{ReportBatch: op}})
	cancel()
	switch {
	case errors.Is(err, raftstore.ErrOpUnsupported):
		return err
	case err != nil:
		err = toStatus(err)
	case res.GetError() != nil:
		err = commandStatus(res.GetError())
	case len(res.GetBatchErrors()) != len(calls):
		err = fmt.Errorf("report batch of %d got %d answers", len(calls), len(res.GetBatchErrors()))
	}
	// Answers are in the op's order: outcomes, then health.
	o, h := 0, len(op.Outcomes)
	for _, c := range calls {
		if err != nil {
			c.done <- reportAnswer{err: err}
			continue
		}
		i := &o
		if c.health != nil {
			i = &h
		}
		ce := res.GetBatchErrors()[*i]
		*i++
		if ce.GetCode() != pb.CommandError_CODE_UNSPECIFIED {
			c.done <- reportAnswer{err: commandStatus(ce)}
			continue
		}
		c.done <- reportAnswer{rev: res.GetRevision()}
	}
	return nil
}

func (b *reportBatcher) proposeOne(c *reportCall) (uint64, error) {
	cmd := &pb.Command{Op: &pb.Command_ReportOutcomes{ReportOutcomes: c.outcomes}}
	if c.health != nil {
		cmd = &pb.Command{Op: &pb.Command_ReportHealth{ReportHealth: c.health}}
	}
	ctx, cancel := context.WithTimeout(c.ctx, proposeTimeout)
	defer cancel()
	return b.s.write(ctx, cmd)
}
