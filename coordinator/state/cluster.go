package state

import (
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/clusterid"
)

// The cluster id names one raft history. Revisions are raft indexes, so two
// clusters (or a cluster rebuilt from nothing) reuse the same revisions for
// different states; the id is what tells an edge or a member that its
// revision belongs to another history and does not compare.
//
// The leader draws it (clusterid.New, outside the state machine, which must
// stay deterministic) and proposes InitClusterOp while the state has none.
// The first one committed wins; any later one is a no-op, so proposals
// racing across a leader change are harmless. It is kept in snapshots and
// watch resets and never changes afterwards.

// ClusterID is the cluster's id; "" until the leader's InitClusterOp commits.
func (v View) ClusterID() string { return v.t.clusterID }

// initCluster gives the state its id, once.
func (tx *txn) initCluster(op *pb.InitClusterOp) ([]*pb.Event, *pb.CommandError) {
	id := op.GetClusterId()
	if err := clusterid.Validate(id); err != nil {
		return nil, invalid("cluster_id", "%v", err)
	}
	if tx.t.clusterID != "" {
		return nil, nil // already set: the first proposal committed won
	}
	tx.t.clusterID = id
	return []*pb.Event{{Kind: &pb.Event_SetClusterId{SetClusterId: id}}}, nil
}
