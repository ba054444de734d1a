package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Group commit of nonce checks. Every CheckNonces call on the leader hands
// its checks to the batcher; a few proposer goroutines each take whatever
// is waiting (up to maxBatchChecks) and propose it as one CheckNoncesOp, so
// that under load many calls share one raft entry, and while entries are in
// flight the next batch fills. hashicorp/raft then writes the entries
// queued together in one disk write.
//
// Admission. Before a batch is proposed, each of its calls is checked
// against the leader's state at one revision and the checks of the batches
// still in flight: a call naming a key that does not exist is refused
// (FAILED_PRECONDITION), and one that would take the nonces of a key past
// the per-key quota, or the store past the global one, is refused
// (RESOURCE_EXHAUSTED); a refused call proposes nothing and shares nothing
// of the other calls' fate. A check naming a revoked key is answered "not
// fresh" without being proposed: an edge whose snapshot predates the
// revocation still asks, and its other checks in the call must not fail.
// The state applies the same key rule (for a key revoked after admission).
// The quotas are the leader's alone: the store passes them only by the
// checks of batches whose outcome was unknown when they were released (a
// commit timeout, a leadership change), each time at most
// nonceProposers*maxBatchChecks.

// Quotas of the nonce store. A nonce is kept for its request's timestamp
// window plus about a minute, so DefaultNoncesPerKey lets one key sustain
// about 2,700 signed requests a second with the default 300 s window, and
// about 270 with the largest (3,600 s).
const (
	// DefaultNoncesPerKey bounds the nonces stored for one API key.
	DefaultNoncesPerKey = 1_000_000
	// DefaultNoncesTotal bounds the nonces stored in all.
	DefaultNoncesTotal = 10_000_000
)

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
	// Set by admit: the checks to propose, and which of checks were
	// answered "not fresh" without being proposed (nil: none).
	send []*pb.NonceCheck
	dead []bool
}

type nonceAnswer struct {
	fresh []bool
	err   error
}

type nonceBatcher struct {
	s     *Server
	calls chan *nonceCall
	once  sync.Once
	// quota bounds the nonces stored; zero fields take the defaults.
	quota nonceQuota

	mu sync.Mutex // held while a batch is admitted or released
	// inFlight counts the checks admitted into batches that are not
	// answered yet, which the state does not show.
	inFlight nonceCounts
}

// nonceQuota is how many nonces may be stored per key and in all.
type nonceQuota struct{ perKey, total int }

func (q nonceQuota) orDefaults() nonceQuota {
	if q.perKey <= 0 {
		q.perKey = DefaultNoncesPerKey
	}
	if q.total <= 0 {
		q.total = DefaultNoncesTotal
	}
	return q
}

// nonceCounts counts nonces that a batch may store: in all and per key id.
type nonceCounts struct {
	total  int
	perKey map[string]int
}

func (n *nonceCounts) add(o nonceCounts, sign int) {
	if n.perKey == nil {
		n.perKey = map[string]int{}
	}
	n.total += sign * o.total
	for k, v := range o.perKey {
		if n.perKey[k] += sign * v; n.perKey[k] == 0 {
			delete(n.perKey, k)
		}
	}
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
	live := calls[:0]
	for _, c := range calls {
		if c.ctx.Err() != nil {
			c.done <- nonceAnswer{err: c.ctx.Err()}
			continue
		}
		live = append(live, c)
	}
	live, reserved := b.admit(live)
	checks := make([]*pb.NonceCheck, 0, n)
	for _, c := range live {
		checks = append(checks, c.send...)
	}
	var res *pb.CommandResult
	var err error
	if len(checks) > 0 {
		ctx, cancel := context.WithTimeout(b.s.stopping, proposeTimeout)
		res, err = b.s.proposer.Propose(ctx, &pb.Command{Op: &pb.Command_CheckNonces{CheckNonces: &pb.CheckNoncesOp{Checks: checks}}})
		cancel()
		if err == nil && res.GetError() != nil {
			err = commandStatus(res.GetError())
		} else if err != nil {
			err = toStatus(err)
		}
		if err == nil && len(res.GetFresh()) != len(checks) {
			err = fmt.Errorf("nonce batch of %d checks got %d answers", len(checks), len(res.GetFresh()))
		}
	}
	// Applied (or failed): the state now shows what the batch stored.
	b.release(reserved)
	at := 0
	for _, c := range live {
		if err != nil {
			c.done <- nonceAnswer{err: err}
			continue
		}
		fresh := make([]bool, len(c.checks))
		j := 0
		for i := range c.checks {
			if c.dead != nil && c.dead[i] {
				continue
			}
			fresh[i] = res.GetFresh()[at+j]
			j++
		}
		at += len(c.send)
		c.done <- nonceAnswer{fresh: fresh}
	}
}

// admit answers the calls refused (see Admission above) and returns the
// others, each with its checks to send, and what they reserved, which the
// caller releases once the batch is answered. It reads the state at one
// revision; the batches in flight are applied before they are released,
// so every admitted check is counted in one of the two.
func (b *nonceBatcher) admit(calls []*nonceCall) ([]*nonceCall, nonceCounts) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := admission{f: b.s.reader.View(), quota: b.quota.orDefaults(), inFlight: &b.inFlight, keys: map[string]*keyUse{}}
	var reserved nonceCounts
	ok := calls[:0]
	for _, c := range calls {
		use, err := a.call(c)
		if err != nil {
			c.done <- nonceAnswer{err: err}
			continue
		}
		b.inFlight.add(use, 1)
		reserved.add(use, 1)
		ok = append(ok, c)
	}
	return ok, reserved
}

// release forgets the reservation of an answered batch.
func (b *nonceBatcher) release(reserved nonceCounts) {
	b.mu.Lock()
	b.inFlight.add(reserved, -1)
	b.mu.Unlock()
}

// admission checks calls against one revision of the state.
type admission struct {
	f        state.View
	quota    nonceQuota
	inFlight *nonceCounts
	keys     map[string]*keyUse // by key id, as looked up for this batch
}

type keyUse struct {
	exists, revoked bool
	stored          int // nonces stored under the key; -1 until counted
}

func (a *admission) key(id string) *keyUse {
	u := a.keys[id]
	if u == nil {
		u = &keyUse{stored: -1}
		u.exists, u.revoked = a.f.KeyStatus(id)
		a.keys[id] = u
	}
	return u
}

// call sets c.send and c.dead, or refuses c, and returns how many nonces c
// may store, in all and per key.
func (a *admission) call(c *nonceCall) (nonceCounts, error) {
	c.send, c.dead = c.send[:0], nil
	for i, ch := range c.checks {
		u := a.key(ch.GetKeyId())
		switch {
		case !u.exists:
			return nonceCounts{}, commandStatus(&pb.CommandError{
				Code: pb.CommandError_CODE_FAILED_PRECONDITION, Field: fmt.Sprintf("checks[%d].key_id", i),
				Message: fmt.Sprintf("no key %q: an edge checks nonces only for keys the coordinators sent it (a key just created may not be applied on the leader yet: retry)", ch.GetKeyId()),
			})
		case u.revoked:
			if c.dead == nil {
				c.dead = make([]bool, len(c.checks))
			}
			c.dead[i] = true
		default:
			c.send = append(c.send, ch)
		}
	}
	// Every check may store a nonce; only near a quota is it worth looking
	// up which ones are stored already (retries and replays store nothing).
	use := upperBound(c.send, nil)
	err := a.refusal(c, use)
	if err != nil {
		use = upperBound(c.send, a.f.NonceStored)
		err = a.refusal(c, use)
	}
	return use, err
}

// upperBound counts the nonces checks may store: every check when stored is
// nil, else the distinct (key, nonce) that stored does not report stored.
func upperBound(checks []*pb.NonceCheck, stored func(keyID, nonce string) bool) nonceCounts {
	use := nonceCounts{perKey: map[string]int{}}
	var seen map[[2]string]bool
	if stored != nil {
		seen = make(map[[2]string]bool, len(checks))
	}
	for _, ch := range checks {
		if stored != nil {
			k := [2]string{ch.GetKeyId(), ch.GetNonce()}
			if seen[k] || stored(k[0], k[1]) {
				continue
			}
			seen[k] = true
		}
		use.total++
		use.perKey[ch.GetKeyId()]++
	}
	return use
}

// refusal is the RESOURCE_EXHAUSTED error for c if it would store use, or
// nil.
func (a *admission) refusal(c *nonceCall, use nonceCounts) error {
	held := a.f.Nonces() + a.inFlight.total
	if held+use.total > a.quota.total {
		return quotaError("nonces", "the nonce store holds %d nonces (those of calls in flight included) and this call would add %d, over its limit of %d; retry later: nonces are reaped as their requests' timestamp windows pass",
			held, use.total, a.quota.total)
	}
	if held+use.total <= a.quota.perKey {
		return nil // no key can hold more than the whole store
	}
	for id, n := range use.perKey {
		u := a.key(id)
		if u.stored < 0 {
			u.stored = a.f.KeyNonces(id)
		}
		if k := u.stored + a.inFlight.perKey[id]; k+n > a.quota.perKey {
			return quotaError("key:"+id, "%skey %q holds %d nonces (those of calls in flight included) and this call would add %d, over its quota of %d; a nonce is kept until its request's timestamp window has passed: send fewer requests with this key, or spread them over more keys",
				checkField(c, id), id, k, n, a.quota.perKey)
		}
	}
	return nil
}

// checkField is "checks[i].key_id: " for the first check of c naming id.
func checkField(c *nonceCall, id string) string {
	for i, ch := range c.checks {
		if ch.GetKeyId() == id {
			return fmt.Sprintf("checks[%d].key_id: ", i)
		}
	}
	return ""
}

// quotaError is a RESOURCE_EXHAUSTED status with a QuotaFailure detail
// naming subject ("key:<id>" or "nonces").
func quotaError(subject, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: subject, Description: msg}}}); err == nil {
		st = d
	}
	return st.Err()
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
	if e := state.ValidateNonceChecks(checks); e != nil {
		return nil, commandStatus(e)
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
