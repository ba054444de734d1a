package raftstore

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
)

// Server is one entry of the raft configuration.
type Server struct {
	Name     string
	RaftAddr string
	Voter    bool
}

// Servers returns the latest raft configuration this member knows.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, translate(err)
	}
	var out []Server
	for _, srv := range f.Configuration().Servers {
		out = append(out, Server{Name: string(srv.ID), RaftAddr: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddVoter adds a member as a voter (leader only). Adding a member already
// present with the same address is a no-op.
func (s *Store) AddVoter(ctx context.Context, name, raftAddr string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	return s.waitFuture(ctx, s.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(raftAddr), 0, 0))
}

// RemoveServer removes a member from the raft configuration (leader only).
func (s *Store) RemoveServer(ctx context.Context, name string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	servers, err := s.Servers()
	if err != nil {
		return err
	}
	found := false
	for _, srv := range servers {
		found = found || srv.Name == name
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	return s.waitFuture(ctx, s.raft.RemoveServer(raft.ServerID(name), 0, 0))
}

// TransferLeadership hands leadership to the named voter, or to the most
// up-to-date other voter when to is empty (leader only).
func (s *Store) TransferLeadership(ctx context.Context, to string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if to == "" {
		return s.waitFuture(ctx, s.raft.LeadershipTransfer())
	}
	servers, err := s.Servers()
	if err != nil {
		return err
	}
	for _, srv := range servers {
		if srv.Name == to {
			return s.waitFuture(ctx, s.raft.LeadershipTransferToServer(raft.ServerID(srv.Name), raft.ServerAddress(srv.RaftAddr)))
		}
	}
	return fmt.Errorf("%w: %q", ErrUnknownMember, to)
}

// Status is this member's raft status.
type Status struct {
	Role         string // leader, follower, candidate, shutdown
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
	Revision     uint64
}

// Status reports this member's raft status.
func (s *Store) Status() Status {
	st := Status{
		Role:         roleName(s.raft.State()),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.Applied(),
		LastIndex:    s.raft.LastIndex(),
		Revision:     s.View().Revision(),
	}
	st.Term = s.raft.CurrentTerm()
	return st
}

func roleName(st raft.RaftState) string {
	switch st {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}
