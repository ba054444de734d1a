package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc/credentials"
)

// Persister receives every state the client swaps in, in order, to write it
// off the request path; cache.Persister implements it. Its methods must not block.
type Persister interface {
	Reset(*pb.State)
	Append(...*pb.Change)
	Advance(rev uint64)
}

// Config configures a Client. Zero durations take the defaults shown.
type Config struct {
	// Edge and Region identify this edge to the coordinators.
	Edge, Region string
	// Pool is the edge's pool of coordinator connections, shared with the
	// reports and nonce checks: the client picks the member to stream from
	// with it (a Nearest call), tells it which one it follows and how each
	// stream ended. Nil: New makes one from Seeds, DialContext, Creds and
	// the members of Table, closed when Run returns.
	Pool *coordconn.Pool
	// Seeds are coordinator gRPC addresses to start from; members learnt
	// from the state are added to them. Unused with Pool.
	Seeds []string
	// Table is the routing table the edge serves. The client is its only
	// writer; it must hold a table (possibly empty) before Run.
	Table *atomic.Pointer[route.Table]
	// Persister, if set, is told about every swap.
	Persister Persister
	// DialContext opens connections to coordinators; nil uses a net.Dialer.
	// Unused with Pool.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Creds secure those connections (the edge's certificate, accepting
	// coordinators only); nil is plaintext. Unused with Pool.
	Creds credentials.TransportCredentials
	// Logger; nil discards.
	Logger *slog.Logger
	// BackoffBase and BackoffMax bound the jittered exponential wait between
	// attempts. Defaults 100ms and 3s.
	BackoffBase, BackoffMax time.Duration
	// IdleTimeout drops a stream on which nothing (not even progress)
	// arrived for that long. Default 30s.
	IdleTimeout time.Duration
	// AckTimeout bounds one Ack call. Default 5s.
	AckTimeout time.Duration
	// RebalanceInterval is how often a session with a coordinator outside
	// the edge's region checks whether one in the region is known, and moves
	// to it. Default 1m.
	RebalanceInterval time.Duration
	// ClusterID, if set, pins the edge to one cluster (the id edgecell
	// cluster status shows): a coordinator serving another is refused and
	// the next one tried, and the cached state is kept. Unset, the edge
	// follows the cluster its coordinators serve; when that cluster's id
	// changes (it was rebuilt), the edge replaces its state with the new
	// cluster's even if its own revision is higher, since revisions of two
	// clusters do not compare.
	ClusterID string
	// OnSwap, if set, is called after each swap with the new table (for
	// metrics); it must not block.
	OnSwap func(*route.Table)
}

// Client follows the coordinators; see the package doc.
type Client struct {
	cfg     Config
	log     *slog.Logger
	pool    *coordconn.Pool
	ownPool bool // made by New: closed by Run
}

// New validates cfg and returns a client; Run starts it.
func New(cfg Config) (*Client, error) {
	if cfg.Table == nil || cfg.Table.Load() == nil {
		return nil, errors.New("watch: Config.Table must hold a table")
	}
	if cfg.Edge == "" || cfg.Region == "" {
		return nil, errors.New("watch: Config.Edge and Config.Region are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.BackoffBase = orDefault(cfg.BackoffBase, 100*time.Millisecond)
	cfg.BackoffMax = orDefault(cfg.BackoffMax, 3*time.Second)
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, 30*time.Second)
	cfg.AckTimeout = orDefault(cfg.AckTimeout, 5*time.Second)
	cfg.RebalanceInterval = orDefault(cfg.RebalanceInterval, time.Minute)
	c := &Client{cfg: cfg, log: cfg.Logger.With("edge", cfg.Edge, "region", cfg.Region), pool: cfg.Pool}
	if c.pool == nil {
		c.ownPool = true
		c.pool = coordconn.New(coordconn.Config{
			Edge: cfg.Edge, Region: cfg.Region, Seeds: cfg.Seeds, Members: func() []*pb.Member { return cfg.Table.Load().Members() },
			DialContext: cfg.DialContext, Creds: cfg.Creds,
		})
	}
	return c, nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Connected is the address of the coordinator the client currently streams
// from, or "" between sessions.
func (c *Client) Connected() string { return c.pool.Following() }

// Run follows the coordinators until ctx ends; it returns ctx's error.
// The table keeps being served, unchanged, while no coordinator answers.
func (c *Client) Run(ctx context.Context) error {
	if c.ownPool {
		defer c.pool.Close()
	}
	failures := 0
	// tried are the members that failed since the last good session: the
	// next session goes to another one, until every one was tried.
	var tried []string
	for {
		cand, ok := c.pool.Pick(coordconn.Nearest, tried)
		if !ok && len(tried) > 0 {
			tried = tried[:0]
			cand, ok = c.pool.Pick(coordconn.Nearest, nil)
		}
		err := ErrNoCoordinators
		progressed := false
		if ok {
			progressed, err = c.session(ctx, cand)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrRebalance) {
			failures, tried = 0, tried[:0]
			continue
		}
		if ok && !errors.Is(err, ErrRejected) {
			// The member's stream broke or went silent: the pool puts it
			// last for every call for a while (a rejected change says
			// nothing about the member).
			c.pool.Failed(cand.Addr, err)
		}
		if progressed && !errors.Is(err, ErrRejected) {
			// After a good session start again from the most preferred.
			failures, tried = 1, tried[:0]
		} else {
			failures++
			if ok {
				tried = append(tried, cand.Addr)
			}
		}
		wait := backoff(failures, c.cfg.BackoffBase, c.cfg.BackoffMax)
		c.log.Warn("watch stream ended; reconnecting", "err", err, "revision", c.cfg.Table.Load().Revision(), "backoff", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// preferred reports whether the pool would now start a stream on a member
// of the edge's region other than addr.
func (c *Client) preferred(addr string) bool {
	best, ok := c.pool.Pick(coordconn.Nearest, nil)
	return ok && best.Local && best.Addr != addr
}

// session streams from one coordinator until the stream fails. progressed
// reports whether at least one message was received and applied.
func (c *Client) session(ctx context.Context, cand coordconn.Candidate) (progressed bool, err error) {
	client, err := c.pool.Client(cand.Addr)
	if err != nil {
		return false, fmt.Errorf("coordinator %s: %w", cand.Addr, err)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	acks := newAcker(sctx, client, c.cfg.Edge, c.cfg.Region, c.cfg.AckTimeout, c.log)
	defer acks.wait()
	defer cancel(nil)

	cur := c.cfg.Table.Load()
	from, cluster := cur.Revision(), cur.ClusterID()
	if cluster == "" {
		cluster = c.cfg.ClusterID
	}
	stream, err := client.Watch(sctx, &pb.WatchRequest{Edge: c.cfg.Edge, Region: c.cfg.Region, FromRevision: from, ClusterId: cluster, ResetInParts: true})
	if err != nil {
		return false, fmt.Errorf("coordinator %s: watch: %w", cand.Addr, err)
	}
	idle := time.AfterFunc(c.cfg.IdleTimeout, func() { cancel(ErrStreamIdle) })
	defer idle.Stop()
	var rebalance <-chan time.Time
	if !cand.Local {
		t := time.NewTicker(c.cfg.RebalanceInterval)
		defer t.Stop()
		rebalance = t.C
	}
	first := true
	var parts partialReset
	for {
		msg, err := stream.Recv()
		if err != nil {
			if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil {
				err = cause
			}
			c.pool.Follow("")
			return progressed, fmt.Errorf("coordinator %s: %w", cand.Addr, err)
		}
		idle.Reset(c.cfg.IdleTimeout)
		if first {
			first = false
			c.pool.Follow(cand.Addr)
			c.log.Info("watching", "member", cand.Addr, "revision", from, "cluster_id", cluster)
		}
		if err := c.handle(sctx, msg, acks, &parts); err != nil {
			c.pool.Follow("")
			return progressed, fmt.Errorf("coordinator %s: %w", cand.Addr, err)
		}
		progressed = true
		if parts.pending() {
			continue // no move to another member in the middle of a reset
		}
		if cand.Blind {
			// Connected through a seed before knowing any region: move to
			// a coordinator of our own region as soon as one is known.
			// Only once: if it fails, the next pick is informed and the
			// periodic rebalance takes over, so there is no reconnect loop.
			cand.Blind = false
			if c.preferred(cand.Addr) {
				c.pool.Follow("")
				return true, ErrRebalance
			}
		}
		select {
		case <-rebalance:
			if c.preferred(cand.Addr) {
				c.pool.Follow("")
				return true, ErrRebalance
			}
		default:
		}
	}
}
