package state

import (
	"errors"
	"strings"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/clusterid"
)

func initClusterCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_InitCluster{InitCluster: &pb.InitClusterOp{ClusterId: id}}}
}

func TestInitClusterSetsTheIDOnce(t *testing.T) {
	s := New()
	if got := s.Freeze().ClusterID(); got != "" {
		t.Fatalf("new store has cluster id %q, want none", got)
	}
	first := clusterid.New()
	res, ch := s.Apply(1, initClusterCmd(first))
	if res.GetError() != nil || res.GetRevision() != 1 {
		t.Fatalf("first InitCluster: %v", res)
	}
	if len(ch.GetEvents()) != 1 || ch.GetEvents()[0].GetSetClusterId() != first {
		t.Fatalf("first InitCluster published %v, want one set_cluster_id %q", ch, first)
	}
	// A second leader's proposal, racing the first, changes nothing.
	res, ch = s.Apply(2, initClusterCmd(clusterid.New()))
	if res.GetError() != nil || ch != nil || res.GetRevision() != 1 {
		t.Fatalf("second InitCluster: result %v, change %v; want a no-op at revision 1", res, ch)
	}
	if got := s.Freeze().ClusterID(); got != first {
		t.Fatalf("cluster id %q after a second InitCluster, want the first %q", got, first)
	}
	if got := s.Freeze().State().GetClusterId(); got != first {
		t.Fatalf("watch reset state carries cluster id %q, want %q", got, first)
	}
}

func TestInitClusterRefusesBadIDs(t *testing.T) {
	for _, id := range []string{"", "UPPER", "has space", "a/b", strings.Repeat("a", clusterid.MaxLen+1)} {
		s := New()
		res, ch := s.Apply(1, initClusterCmd(id))
		if res.GetError().GetCode() != pb.CommandError_CODE_INVALID_ARGUMENT || res.GetError().GetField() != "cluster_id" || ch != nil {
			t.Errorf("InitCluster %q: result %v, change %v; want invalid cluster_id", id, res, ch)
		}
		if s.Freeze().ClusterID() != "" {
			t.Errorf("InitCluster %q set the id to %q", id, s.Freeze().ClusterID())
		}
	}
}

func TestClusterIDSurvivesSnapshots(t *testing.T) {
	s := New()
	s.Apply(1, applyConfigCmd(baseConfig()))
	id := clusterid.New()
	s.Apply(2, initClusterCmd(id))
	snap, err := s.Freeze().Snapshot(2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if r.Freeze().ClusterID() != id {
		t.Fatalf("restored cluster id %q, want %q", r.Freeze().ClusterID(), id)
	}
	// The id is never replaced, restored or not.
	if res, ch := r.Apply(3, initClusterCmd(clusterid.New())); ch != nil || r.Freeze().ClusterID() != id {
		t.Fatalf("InitCluster after restore: %v %v, id now %q", res, ch, r.Freeze().ClusterID())
	}

	st := s.Freeze().State()
	st.ClusterId = "Not-Valid"
	if _, err := FromState(st); !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), "cluster_id") {
		t.Fatalf("FromState with a bad cluster id: %v, want ErrInvalidSnapshot naming cluster_id", err)
	}
}
