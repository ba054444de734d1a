package coordinator

import (
	"context"
	"math/rand/v2"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/clusterid"
)

// DefaultTickPoll is how often the leader looks for a breaker or health
// deadline that has passed. It bounds how late an ejection ends (an open
// breaker turns half-open at most about this long after its ejection).
const DefaultTickPoll = 100 * time.Millisecond

// runTicker is the leader's clock for the state machine, which never reads
// one (like Consul's tombstone reaper and etcd's lease revoker): while this
// member leads, it proposes a TickOp whenever the earliest deadline of the
// state has passed by its clock, including deadlines that passed under the
// previous leader. The raft store stamps the command with the same clock. It polls with jitter rather than arming timers so
// that it needs no wake-up on every state change; a member that is not the
// leader only reads one atomic per poll.
func (c *Coordinator) runTicker(ctx context.Context) {
	poll := c.cfg.TickPoll
	if poll <= 0 {
		poll = DefaultTickPoll
	}
	tick := &pb.Command{Op: &pb.Command_Tick{Tick: &pb.TickOp{}}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll/2 + rand.N(poll/2+1)):
		}
		if !c.store.IsLeader() {
			continue
		}
		v := c.store.View()
		if v.ClusterID() == "" {
			c.initCluster(ctx)
		}
		if d, ok := v.NextDeadline(); !ok || c.now().Before(d) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := c.store.Propose(pctx, tick)
		cancel()
		if err != nil {
			c.log.Debug("tick not committed; retrying at the next poll", "error", err)
			continue
		}
		c.log.Debug("tick committed", "revision", res.GetRevision())
	}
}

// initCluster gives a cluster that has no id yet one, drawn here, outside
// the state machine (which must stay deterministic). A leader that has not
// applied its predecessor's InitCluster yet may propose another: the first
// committed wins and the rest change nothing.
func (c *Coordinator) initCluster(ctx context.Context) {
	id := clusterid.New()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := c.store.Propose(pctx, &pb.Command{Op: &pb.Command_InitCluster{InitCluster: &pb.InitClusterOp{ClusterId: id}}})
	switch {
	case err != nil:
		c.log.Debug("cluster id not committed; retrying at the next poll", "error", err)
	case res.GetError() != nil:
		c.log.Error("cluster id refused", "cluster_id", id, "error", res.GetError().GetMessage())
	default:
		c.log.Info("cluster has its id", "cluster_id", c.store.View().ClusterID(), "revision", res.GetRevision())
	}
}
