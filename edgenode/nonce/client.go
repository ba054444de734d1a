package nonce

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config configures a Client. Edge and Coordinators are required; zero
// tuning fields take the defaults shown.
type Config struct {
	// Edge is this edge's name: sent with every call and the first part of
	// every check id.
	Edge string
	// Coordinators is the edge's pool of coordinator connections (shared
	// with the watch and the reports); checks are Leader calls on it.
	Coordinators *coordconn.Pool
	// Timeout bounds one Check, from the call to the answer, retries
	// included; past it Check returns ErrUnavailable. Default 2s.
	Timeout time.Duration
	// AttemptTimeout bounds one RPC before the batch is resent to another
	// coordinator. Default 750ms.
	AttemptTimeout time.Duration
	// MaxBatch bounds the checks of one RPC. Default and maximum 1024 (what
	// a coordinator accepts in one call).
	MaxBatch int
	// MaxInFlight is how many RPCs may be in flight at once. Default 4.
	MaxInFlight int
	// CacheSize bounds the (key, nonce) pairs remembered as used. Default
	// 16384; negative: no cache.
	CacheSize int
	// Now is the clock nonce expiries are compared with; nil uses
	// time.Now. (Timeouts run on real time.)
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// maxBatch is the most checks a coordinator accepts in one call.
const maxBatch = 1024

// retryBase is the pause after every coordinator failed once, doubled after
// each further round, within the check's Timeout.
const retryBase = 50 * time.Millisecond

// Client checks nonces with the coordinators; see the package doc. Safe for
// concurrent use. Close stops it.
type Client struct {
	cfg    Config
	log    *slog.Logger
	prefix string // "<edge>/<boot id>/": check ids are prefix + counter
	seq    atomic.Uint64
	cache  cache
	ctx    context.Context // ends at Close; bounds every RPC
	cancel context.CancelFunc

	mu     sync.Mutex
	ready  *sync.Cond // signalled when queue grows or closed is set
	queue  []*call
	closed bool
	wg     sync.WaitGroup

	rpcs, rpcErrors, cacheHits atomic.Uint64
}

// call is one Check waiting for its answer.
type call struct {
	check    *pb.NonceCheck
	deadline time.Time
	done     chan answer // buffered: the sender never blocks on it
}

type answer struct {
	fresh bool
	err   error
}

// New returns a Client and starts its senders.
func New(cfg Config) (*Client, error) {
	if cfg.Edge == "" {
		return nil, fmt.Errorf("nonce: Config.Edge is required")
	}
	if cfg.Coordinators == nil {
		return nil, fmt.Errorf("nonce: Config.Coordinators is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 750 * time.Millisecond
	}
	if cfg.MaxBatch <= 0 || cfg.MaxBatch > maxBatch {
		cfg.MaxBatch = maxBatch
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 16384
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var boot [8]byte
	rand.Read(boot[:]) // never fails: crypto/rand crashes the program instead
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, log: cfg.Logger, prefix: cfg.Edge + "/" + hex.EncodeToString(boot[:]) + "/",
		cache: newCache(max(cfg.CacheSize, 0)),
		ctx:   ctx, cancel: cancel,
	}
	c.ready = sync.NewCond(&c.mu)
	for range cfg.MaxInFlight {
		c.wg.Add(1)
		go c.run()
	}
	return c, nil
}

// Check asks whether nonce was never used with the key keyID, and stores it
// if so until expiresUnixMs (the end of the signed request's timestamp
// window). It returns true for a nonce seen for the first time, false for a
// replay (from the local cache, or the coordinators' answer), and an error
// wrapping ErrUnavailable or ErrClosed when no answer came within Timeout:
// the request must then be refused. It blocks until then.
func (c *Client) Check(keyID string, nonce []byte, expiresUnixMs int64) (bool, error) {
	if c.cache.seen(keyID, nonce, c.cfg.Now().UnixMilli()) {
		c.cacheHits.Add(1)
		return false, nil
	}
	cl := &call{
		check:    &pb.NonceCheck{KeyId: keyID, Nonce: string(nonce), ExpiresUnixMs: expiresUnixMs, CheckId: c.prefix + strconv.FormatUint(c.seq.Add(1), 10)},
		deadline: time.Now().Add(c.cfg.Timeout),
		done:     make(chan answer, 1),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, ErrClosed
	}
	c.queue = append(c.queue, cl)
	c.ready.Signal()
	c.mu.Unlock()
	a := <-cl.done
	return a.fresh, a.err
}

// Close stops the senders; checks waiting or in flight get ErrClosed. Later
// calls do nothing.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.ready.Broadcast()
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// Stats are the client's counters, for metrics and tests.
type Stats struct {
	// RPCs is the CheckNonces calls made (retries included); RPCErrors the
	// ones that failed.
	RPCs, RPCErrors uint64
	// CacheHits is the checks answered "replay" from the local cache.
	CacheHits uint64
}

// Stats returns the counters so far.
func (c *Client) Stats() Stats {
	return Stats{RPCs: c.rpcs.Load(), RPCErrors: c.rpcErrors.Load(), CacheHits: c.cacheHits.Load()}
}

// run sends batches until Close.
func (c *Client) run() {
	defer c.wg.Done()
	for {
		batch, ok := c.take()
		if !ok {
			return
		}
		c.send(batch)
	}
}

// take waits for checks and returns up to MaxBatch of them, oldest first;
// false after Close, once it has answered every queued check.
func (c *Client) take() ([]*call, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 && !c.closed {
		c.ready.Wait()
	}
	if c.closed {
		for _, cl := range c.queue {
			cl.done <- answer{err: ErrClosed}
		}
		c.queue = nil
		return nil, false
	}
	n := min(len(c.queue), c.cfg.MaxBatch)
	batch := make([]*call, n)
	copy(batch, c.queue)
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch, true
}

// send asks for one batch and answers its checks. A check whose deadline
// passed while it waited for a sender is answered ErrUnavailable without
// being sent; the batch may take until the earliest deadline of the others.
func (c *Client) send(batch []*call) {
	now := time.Now()
	live := batch[:0]
	var deadline time.Time
	for _, cl := range batch {
		if !now.Before(cl.deadline) {
			cl.done <- answer{err: fmt.Errorf("%w: waited %s for a sender", ErrUnavailable, c.cfg.Timeout)}
			continue
		}
		live = append(live, cl)
		if deadline.IsZero() || cl.deadline.Before(deadline) {
			deadline = cl.deadline
		}
	}
	if len(live) == 0 {
		return
	}
	req := &pb.CheckNoncesRequest{Edge: c.cfg.Edge, Checks: make([]*pb.NonceCheck, len(live))}
	for i, cl := range live {
		req.Checks[i] = cl.check
	}
	fresh, err := c.ask(req, deadline)
	if err != nil {
		c.log.Warn("nonce check failed; refusing the signed requests", "checks", len(live), "err", err)
		for _, cl := range live {
			cl.done <- answer{err: err}
		}
		return
	}
	c.cache.addAll(req.Checks, c.cfg.Now().UnixMilli())
	for i, cl := range live {
		cl.done <- answer{fresh: fresh[i]}
	}
}

// ask sends req until a coordinator answers it or deadline passes, each
// time with the same check ids: to the coordinator the pool picks for a
// Leader call, then to each other one (at once: the pool puts the one that
// failed last), then, after a pause, round again.
func (c *Client) ask(req *pb.CheckNoncesRequest, deadline time.Time) ([]bool, error) {
	var (
		tried []string
		last  error
		pause = retryBase
	)
	for {
		cand, ok := c.cfg.Coordinators.Pick(coordconn.Leader, tried)
		if !ok {
			if len(tried) == 0 {
				last = ErrNoCoordinator
			}
			// Every coordinator failed once in this round.
			tried = tried[:0]
			if !c.sleep(pause, deadline) {
				break
			}
			pause *= 2
			continue
		}
		tried = append(tried, cand.Addr)
		fresh, err := c.attempt(cand.Addr, req, deadline)
		if err == nil {
			return fresh, nil
		}
		last = err
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if !retryable(err) || !time.Now().Before(deadline) {
			break
		}
	}
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, last)
}

// attempt makes one CheckNonces call on the coordinator at addr and tells
// the pool how it went.
func (c *Client) attempt(addr string, req *pb.CheckNoncesRequest, deadline time.Time) ([]bool, error) {
	pool := c.cfg.Coordinators
	cl, err := pool.Client(addr)
	if err != nil {
		pool.Failed(addr, err)
		return nil, err
	}
	start := time.Now()
	end := start.Add(c.cfg.AttemptTimeout)
	if deadline.Before(end) {
		end = deadline
	}
	ctx, cancel := context.WithDeadline(c.ctx, end)
	defer cancel()
	c.rpcs.Add(1)
	resp, err := cl.CheckNonces(ctx, req)
	if err == nil && len(resp.GetFresh()) != len(req.GetChecks()) {
		err = status.Errorf(codes.Internal, "%d answers to %d checks", len(resp.GetFresh()), len(req.GetChecks()))
	}
	if err != nil {
		c.rpcErrors.Add(1)
		pool.Failed(addr, err)
		c.log.Debug("nonce check RPC failed", "coordinator", addr, "checks", len(req.GetChecks()), "err", err)
		return nil, fmt.Errorf("coordinator %s: %w", addr, err)
	}
	pool.Answered(addr, coordconn.Leader, time.Since(start))
	return resp.GetFresh(), nil
}

// retryable reports whether another coordinator, or the same one later,
// may answer where this call failed: anything but a refusal of the request
// itself, which would be refused again.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated:
		return false
	}
	return true
}

// sleep pauses for d, or less if deadline comes first; false when there is
// no time left (or the client was closed).
func (c *Client) sleep(d time.Duration, deadline time.Time) bool {
	left := time.Until(deadline)
	if left <= 0 {
		return false
	}
	t := time.NewTimer(min(d, left))
	defer t.Stop()
	select {
	case <-t.C:
		return time.Now().Before(deadline)
	case <-c.ctx.Done():
		return false
	}
}
