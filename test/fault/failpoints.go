//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Failpoint is one kind of fault, as in etcd's robustness suite. Inject
// applies it, lets it last as long as the schedule drawn from rng says, and
// recovers from it (restart, SIGCONT, heal) before returning, waiting (with
// a deadline) until the processes it touched answer again. Available says
// whether the cluster can take it (partitions need root and iptables).
type Failpoint interface {
	Name() string
	Inject(ctx context.Context, c *Cluster, rng *rand.Rand) error
	Available(c *Cluster) bool
}

// failpoints are every failpoint the nemesis draws from.
var failpoints = []Failpoint{
	killCoordinator{leader: true},
	killCoordinator{leader: false},
	killAllCoordinators{},
	killAllCoordinators{restartEdge: true},
	pauseCoordinator{leader: true},
	pauseCoordinator{leader: false},
	killEdge{},
	partitionCoordinator{},
}

// between draws a duration uniformly in [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func pick(ctx context.Context, c *Cluster, rng *rand.Rand, leader bool) (*member, error) {
	if leader {
		return c.leader(ctx)
	}
	return c.follower(ctx, rng)
}

func role(leader bool) string {
	if leader {
		return "leader"
	}
	return "follower"
}

// killCoordinator SIGKILLs the leader or a follower and restarts it on its
// data dir after a while.
type killCoordinator struct{ leader bool }

func (f killCoordinator) Name() string            { return "kill-" + role(f.leader) }
func (f killCoordinator) Available(*Cluster) bool { return true }

func (f killCoordinator) Inject(ctx context.Context, c *Cluster, rng *rand.Rand) error {
	down := between(rng, 500*time.Millisecond, 3*time.Second)
	m, err := pick(ctx, c, rng, f.leader)
	if err != nil {
		return err
	}
	c.target("%s down %s", m.name, down)
	m.kill()
	sleep(ctx, down)
	if err := m.start(); err != nil {
		return err
	}
	return c.waitMemberUp(ctx, m)
}

// killAllCoordinators SIGKILLs every coordinator at once and restarts them
// all: the edges serve from their snapshots meanwhile. With restartEdge, an
// edge is also killed and restarted while no coordinator runs: it must start
// from its cache and serve (static stability at start).
type killAllCoordinators struct{ restartEdge bool }

func (f killAllCoordinators) Name() string {
	if f.restartEdge {
		return "kill-all-coordinators+edge"
	}
	return "kill-all-coordinators"
}

func (killAllCoordinators) Available(*Cluster) bool { return true }

func (f killAllCoordinators) Inject(ctx context.Context, c *Cluster, rng *rand.Rand) error {
	down := between(rng, time.Second, 4*time.Second)
	c.target("all down %s", down)
	for _, m := range c.members {
		m.kill()
	}
	var errs []error
	if f.restartEdge {
		e := c.edges[rng.IntN(len(c.edges))]
		c.target("%s restarted meanwhile", e.name)
		errs = append(errs, c.restartEdge(ctx, e, 0))
	}
	sleep(ctx, down)
	for _, m := range c.members {
		errs = append(errs, m.start())
	}
	for _, m := range c.members {
		errs = append(errs, c.waitMemberUp(ctx, m))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err := c.leader(ctx)
	return err
}

// pauseCoordinator SIGSTOPs the leader or a follower for a few seconds,
// then SIGCONTs it: a process that is alive but does nothing, as in a long
// GC pause or a VM freeze.
type pauseCoordinator struct{ leader bool }

func (f pauseCoordinator) Name() string            { return "pause-" + role(f.leader) }
func (f pauseCoordinator) Available(*Cluster) bool { return true }

func (f pauseCoordinator) Inject(ctx context.Context, c *Cluster, rng *rand.Rand) error {
	d := between(rng, time.Second, 4*time.Second)
	m, err := pick(ctx, c, rng, f.leader)
	if err != nil {
		return err
	}
	c.target("%s stopped %s", m.name, d)
	if err := m.pause(); err != nil {
		return err
	}
	sleep(ctx, d)
	if err := m.resume(); err != nil {
		return err
	}
	return c.waitMemberUp(ctx, m)
}

// killEdge SIGKILLs an edge and restarts it on its cache after a while.
type killEdge struct{}

func (killEdge) Name() string            { return "kill-edge" }
func (killEdge) Available(*Cluster) bool { return true }

func (killEdge) Inject(ctx context.Context, c *Cluster, rng *rand.Rand) error {
	down := between(rng, 300*time.Millisecond, 2*time.Second)
	e := c.edges[rng.IntN(len(c.edges))]
	c.target("%s down %s", e.name, down)
	return c.restartEdge(ctx, e, down)
}

// restartEdge SIGKILLs e, starts it again after down and waits until it is
// ready.
func (c *Cluster) restartEdge(ctx context.Context, e *edge, down time.Duration) error {
	c.edgeDown(e)
	e.kill()
	e.client.CloseIdleConnections()
	sleep(ctx, down)
	if err := e.start(); err != nil {
		return err
	}
	return c.waitReady(ctx, e)
}

// partitionCoordinator cuts one coordinator (the leader half of the time)
// off from the other two, both ways, for a few seconds. Clients and edges
// still reach it: it must answer errors, never "fresh", and its stale
// leadership must not serve linearizable reads.
type partitionCoordinator struct{}

func (partitionCoordinator) Name() string              { return "partition-coordinator" }
func (partitionCoordinator) Available(c *Cluster) bool { return c.net != nil }

func (partitionCoordinator) Inject(ctx context.Context, c *Cluster, rng *rand.Rand) error {
	d := between(rng, 2*time.Second, 5*time.Second)
	m, err := pick(ctx, c, rng, rng.IntN(2) == 0)
	if err != nil {
		return err
	}
	var others []*member
	for _, o := range c.members {
		if o != m {
			others = append(others, o)
		}
	}
	c.target("%s cut off %s", m.name, d)
	err = c.net.cut(m, others)
	if err == nil {
		sleep(ctx, d)
	}
	if herr := c.net.heal(); herr != nil {
		return errors.Join(err, herr)
	}
	return err
}

// nemesis runs failpoints drawn from rng, spaced by gaps drawn from rng,
// until faultFor has passed, and returns what it did. A failpoint that
// could not recover is recorded with its error; the run goes on (the final
// checks say what it left behind).
func nemesis(ctx context.Context, c *Cluster, rng *rand.Rand, faultFor time.Duration) []FaultEvent {
	var avail []Failpoint
	for _, f := range failpoints {
		if f.Available(c) {
			avail = append(avail, f)
		}
	}
	var events []FaultEvent
	end := c.rec.now() + faultFor
	for c.rec.now() < end && ctx.Err() == nil {
		sleep(ctx, between(rng, time.Second, 3*time.Second))
		f := avail[rng.IntN(len(avail))]
		ev := FaultEvent{Name: f.Name(), Interval: Interval{Start: c.rec.now()}}
		err := f.Inject(ctx, c, rng)
		ev.End, ev.Target = c.rec.now(), c.takeTargets()
		if err != nil {
			ev.Err = err.Error()
		}
		c.logf("fault %-22s %-32s [%s, %s] %s", ev.Name, ev.Target, ev.Start.Round(time.Millisecond), ev.End.Round(time.Millisecond), ev.Err)
		events = append(events, ev)
	}
	return events
}

// healAll undoes whatever a failpoint may have left: removes partitions,
// resumes stopped processes, starts those not running.
func (c *Cluster) healAll(ctx context.Context) error {
	var errs []error
	if c.net != nil {
		errs = append(errs, c.net.heal())
	}
	for _, m := range c.members {
		if m.running() {
			errs = append(errs, m.resume())
		} else {
			errs = append(errs, m.start())
		}
	}
	for _, e := range c.edges {
		if e.running() {
			errs = append(errs, e.resume())
			continue
		}
		c.edgeDown(e)
		if err := e.start(); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, c.waitReady(ctx, e))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	return nil
}
