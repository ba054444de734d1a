package server

import (
	"context"
	"fmt"
	"time"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

type clients struct {
	admin   pb.AdminServiceClient
	cluster pb.ClusterServiceClient
}

// peerCall calls another member, bounded by the peer timeout.
func peerCall[T any](ctx context.Context, s *Server, addr string, call func(context.Context, *clients) (T, error)) (T, error) {
	var zero T
	conn, err := s.peers.get(addr)
	if err != nil {
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PeerTimeout)
	defer cancel()
	return call(ctx, &clients{admin: pb.NewAdminServiceClient(conn), cluster: pb.NewClusterServiceClient(conn)})
}

// RegisterMember implements ClusterService: a member records its own
// region and addresses (the method table checks it names itself). It runs
// on the leader.
func (s *Server) RegisterMember(ctx context.Context, req *pb.RegisterMemberRequest) (*pb.RegisterMemberResponse, error) {
	if req.GetMember().GetName() == "" {
		return nil, invalidArg("member.name", "the member's name is required")
	}
	rev, err := s.write(ctx, &pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: req.GetMember()}}})
	if err != nil {
		return nil, err
	}
	return &pb.RegisterMemberResponse{Revision: rev}, nil
}

// RegisterSelf records this member's own record: on the leader directly,
// else with RegisterMember on the leader, under this member's identity.
func (s *Server) RegisterSelf(ctx context.Context, m *pb.Member) error {
	if s.members.IsLeader() {
		_, err := s.write(ctx, &pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: m}}})
		return err
	}
	conn, err := s.leaderConn(ctx)
	if err != nil {
		return err
	}
	_, err = pb.NewClusterServiceClient(conn).RegisterMember(ctx, &pb.RegisterMemberRequest{Member: m})
	return err
}

// NodeStatus implements ClusterService.
func (s *Server) NodeStatus(context.Context, *pb.NodeStatusRequest) (*pb.NodeStatusResponse, error) {
	return &pb.NodeStatusResponse{Status: s.localStatus(s.reader.View())}, nil
}

// localStatus is this member's status, with the revision of v (the view
// the rest of the caller's answer comes from).
func (s *Server) localStatus(v state.View) *pb.MemberStatus {
	st := s.members.Status()
	return &pb.MemberStatus{
		Name:         s.members.Name(),
		Region:       s.cfg.Region,
		GrpcAddr:     s.cfg.GRPCAddr,
		Role:         st.Role,
		Term:         st.Term,
		AppliedIndex: st.AppliedIndex,
		CommitIndex:  st.CommitIndex,
		Revision:     v.Revision(),
		Halted:       errorText(s.members.Halted()),
	}
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ClusterStatus implements AdminService: the raft configuration as this
// member knows it, each member's own report (or "unreachable"), the leader
// and the highest revision seen.
func (s *Server) ClusterStatus(ctx context.Context, _ *pb.ClusterStatusRequest) (*pb.ClusterStatusResponse, error) {
	servers, err := s.members.Servers()
	if err != nil {
		return nil, toStatus(err)
	}
	// The member records (addresses, regions) come from one view.
	st := s.reader.View()
	leader, _ := s.members.Leader()
	self := s.localStatus(st)
	resp := &pb.ClusterStatusResponse{Leader: leader, Term: self.GetTerm(), Revision: self.GetRevision(), ClusterId: s.watches.ClusterID()}
	statuses := make([]*pb.MemberStatus, len(servers))
	done := make(chan struct{}, len(servers))
	for i, srv := range servers {
		m, _ := st.Member(srv.Name)
		base := &pb.MemberStatus{
			Name: srv.Name, Region: m.GetRegion(), RaftAddr: srv.RaftAddr, GrpcAddr: m.GetGrpcAddr(),
			Voter: srv.Voter, Role: "unreachable",
		}
		statuses[i] = base
		if srv.Name == s.members.Name() {
			self.RaftAddr, self.Voter = srv.RaftAddr, srv.Voter
			statuses[i] = self
			done <- struct{}{}
			continue
		}
		if m.GetGrpcAddr() == "" {
			done <- struct{}{}
			continue
		}
		go func(i int, base *pb.MemberStatus) {
			defer func() { done <- struct{}{} }()
			r, err := peerCall(ctx, s, base.GetGrpcAddr(), func(ctx context.Context, c *clients) (*pb.NodeStatusResponse, error) {
				return c.cluster.NodeStatus(ctx, &pb.NodeStatusRequest{})
			})
			if err != nil {
				return
			}
			got := r.GetStatus()
			got.RaftAddr, got.Voter = base.GetRaftAddr(), base.GetVoter()
			statuses[i] = got
		}(i, base)
	}
	for range servers {
		<-done
	}
	for _, ms := range statuses {
		resp.Revision = max(resp.Revision, ms.GetRevision())
		resp.Term = max(resp.Term, ms.GetTerm())
	}
	resp.Members = statuses
	return resp, nil
}

// AddMember implements AdminService (runs on the leader): the new member
// becomes a voter and its addresses are recorded in the replicated state.
func (s *Server) AddMember(ctx context.Context, req *pb.AddMemberRequest) (*pb.AddMemberResponse, error) {
	m := req.GetMember()
	if m == nil {
		return nil, invalidArg("member", "a member is required")
	}
	if ce := state.ValidateMember(m); ce != nil {
		return nil, commandStatus(ce)
	}
	if err := s.members.AddVoter(ctx, m.GetName(), m.GetRaftAddr()); err != nil {
		return nil, toStatus(fmt.Errorf("add %q as a voter: %w", m.GetName(), err))
	}
	rev, err := s.write(ctx, &pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: m}}})
	if err != nil {
		return nil, err
	}
	s.log.Info("member added", "member", m.GetName(), "raft_addr", m.GetRaftAddr(), "revision", rev)
	return &pb.AddMemberResponse{Revision: rev}, nil
}

// RemoveMember implements AdminService (runs on the leader). The member's
// record goes first, while this member is surely still leader, then the raft
// configuration; removing the leader itself makes it step down.
func (s *Server) RemoveMember(ctx context.Context, req *pb.RemoveMemberRequest) (*pb.RemoveMemberResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, invalidArg("name", "the member's name is required")
	}
	servers, err := s.members.Servers()
	if err != nil {
		return nil, toStatus(err)
	}
	known := false
	for _, srv := range servers {
		known = known || srv.Name == name
	}
	if !known {
		return nil, toStatus(fmt.Errorf("%w: %q is not in the raft configuration", raftstore.ErrUnknownMember, name))
	}
	v := s.reader.View()
	rev := v.Revision()
	if _, ok := v.Member(name); ok {
		if rev, err = s.write(ctx, &pb.Command{Op: &pb.Command_DeleteMember{DeleteMember: &pb.DeleteMemberOp{Name: name}}}); err != nil {
			return nil, err
		}
	}
	if err := s.members.RemoveServer(ctx, name); err != nil {
		return nil, toStatus(fmt.Errorf("remove %q from raft: %w", name, err))
	}
	s.log.Info("member removed", "member", name, "revision", rev)
	return &pb.RemoveMemberResponse{Revision: rev}, nil
}

// TransferLeadership implements AdminService (runs on the leader) and returns
// once another member leads.
func (s *Server) TransferLeadership(ctx context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	if err := s.members.TransferLeadership(ctx, req.GetTo()); err != nil {
		return nil, toStatus(err)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if name, _ := s.members.Leader(); name != "" && name != s.members.Name() {
			return &pb.TransferLeadershipResponse{Leader: name, Term: s.members.Status().Term}, nil
		}
		select {
		case <-ctx.Done():
			return nil, toStatus(ctx.Err())
		case <-t.C:
		}
	}
}
