package watch

import (
	"context"
	"fmt"

	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// handle applies one stream message: the table is swapped at most once per
// message, so a batch of changes becomes visible as a whole (each revision
// in it complete).
func (c *Client) handle(ctx context.Context, msg *pb.WatchResponse, acks *acker, parts *partialReset) error {
	cur := c.cfg.Table.Load()
	switch k := msg.GetKind().(type) {
	case *pb.WatchResponse_Reset_:
		return c.applyReset(ctx, cur, k.Reset_, acks)
	case *pb.WatchResponse_ResetPart:
		st, err := parts.add(k.ResetPart)
		if err != nil || st == nil {
			return err
		}
		return c.applyReset(ctx, cur, st, acks)
	case *pb.WatchResponse_Changes:
		t := cur
		var applied []*pb.Change
		var failed error
		var failedRev uint64
		for _, ch := range k.Changes.GetChanges() {
			if ch.GetRevision() <= t.Revision() {
				continue // already have it (resumed from an older point)
			}
			nt, err := t.Apply(ch)
			if err == nil && c.cfg.ClusterID != "" && nt.ClusterID() != "" && nt.ClusterID() != c.cfg.ClusterID {
				err = fmt.Errorf("%w: it set cluster id %q and this edge follows only %q", ErrForeignCluster, nt.ClusterID(), c.cfg.ClusterID)
			}
			if err != nil {
				failed, failedRev = err, ch.GetRevision()
				break
			}
			t = nt
			applied = append(applied, ch)
		}
		if t != cur {
			c.swap(t)
			if c.cfg.Persister != nil {
				c.cfg.Persister.Append(applied...)
			}
			acks.ack(t.Revision())
		}
		if failed != nil {
			return c.reject(ctx, acks, t.Revision(), failedRev, failed)
		}
	case *pb.WatchResponse_ProgressRevision:
		// Progress means "nothing changed": meaningless before a first state.
		if cur.Revision() > 0 && k.ProgressRevision > cur.Revision() {
			t := cur.WithRevision(k.ProgressRevision)
			c.swap(t)
			if c.cfg.Persister != nil {
				c.cfg.Persister.Advance(t.Revision())
			}
			acks.ack(t.Revision())
		} else if cur.Revision() > 0 {
			acks.heartbeat(cur.Revision())
		}
	default:
		return fmt.Errorf("%w: watch message of unknown kind %T", ErrRejected, k)
	}
	return nil
}

func (c *Client) swap(t *route.Table) {
	c.cfg.Table.Store(t)
	if c.cfg.OnSwap != nil {
		c.cfg.OnSwap(t)
	}
}

// reject reports a revision the edge cannot apply and ends the session.
func (c *Client) reject(ctx context.Context, acks *acker, applied, rejected uint64, cause error) error {
	c.log.Error("rejecting revision", "revision", rejected, "applied", applied, "err", cause)
	acks.rejectAndFlush(ctx, applied, rejected, cause.Error())
	return fmt.Errorf("%w: revision %d: %w", ErrRejected, rejected, cause)
}

// applyReset replaces the served table (cur) with st, unless st belongs to
// a cluster this edge does not follow or is older than cur in the same
// history.
func (c *Client) applyReset(ctx context.Context, cur *route.Table, st *pb.State, acks *acker) error {
	if pin := c.cfg.ClusterID; pin != "" && st.GetClusterId() != pin {
		return fmt.Errorf("%w: it serves cluster %q and this edge follows only %q; keeping the served state (revision %d)",
			ErrForeignCluster, st.GetClusterId(), pin, cur.Revision())
	}
	foreign := cur.ClusterID() != "" && st.GetClusterId() != "" && st.GetClusterId() != cur.ClusterID()
	if foreign {
		// Another history (the cluster was rebuilt, or the coordinators
		// were pointed at another one): its revisions say nothing about ours.
		c.log.Warn("coordinators serve another cluster; replacing the served state with theirs",
			"cluster_id", st.GetClusterId(), "revision", st.GetRevision(), "served_cluster_id", cur.ClusterID(), "served", cur.Revision())
	} else if st.GetRevision() < cur.Revision() {
		// A coordinator behind this edge: the same history, older. Keep
		// ours; its later changes apply on top of it.
		c.log.Warn("ignoring reset older than the served state", "revision", st.GetRevision(), "served", cur.Revision())
		return nil
	}
	t, err := cur.Replace(st)
	if err != nil {
		return c.reject(ctx, acks, cur.Revision(), st.GetRevision(), err)
	}
	c.swap(t)
	if c.cfg.Persister != nil {
		c.cfg.Persister.Reset(st)
	}
	c.log.Info("applied reset", "revision", t.Revision(), "placements", t.Placements())
	acks.ack(t.Revision())
	return nil
}

// partialReset gathers the parts of a reset (ResetPart) of one stream
// until the last, which makes them a state to apply. Nothing of a reset is
// applied before: a stream that breaks in the middle leaves the table as
// it was, and the next stream starts a reset of its own.
type partialReset struct {
	st   *pb.State
	next uint32 // the index the next part must have
}

// pending reports whether a reset is half received.
func (p *partialReset) pending() bool { return p.next > 0 }

// add takes the next part; it returns the whole state at the last part.
func (p *partialReset) add(rp *pb.ResetPart) (*pb.State, error) {
	if rp.GetIndex() != p.next {
		return nil, fmt.Errorf("reset part %d where part %d was due", rp.GetIndex(), p.next)
	}
	ps := rp.GetState()
	if p.next == 0 {
		pc := ps.GetConfig()
		p.st = &pb.State{Revision: ps.GetRevision(), ClusterId: ps.GetClusterId(), Members: ps.GetMembers(),
			Config: &pb.RoutingConfig{Regions: pc.GetRegions(), Latencies: pc.GetLatencies(), DefaultCell: pc.GetDefaultCell()}}
	}
	cfg, pc := p.st.Config, ps.GetConfig()
	cfg.Cells = append(cfg.Cells, pc.GetCells()...)
	cfg.Placements = append(cfg.Placements, pc.GetPlacements()...)
	p.st.Keys = append(p.st.Keys, ps.GetKeys()...)
	p.st.Breakers = append(p.st.Breakers, ps.GetBreakers()...)
	p.st.Health = append(p.st.Health, ps.GetHealth()...)
	p.next++
	if !rp.GetLast() {
		return nil, nil
	}
	st := p.st
	*p = partialReset{}
	return st, nil
}
