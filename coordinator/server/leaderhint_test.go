package server

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/raftstore"
)

// followerRaft is a member that knows the leader is leader.
type followerRaft struct {
	member // the methods these tests do not need: calling one panics
	leader string
}

func (followerRaft) Name() string                { return "n1" }
func (r followerRaft) Leader() (string, string)  { return r.leader, "" }
func (followerRaft) Halted() error               { return nil }
func (followerRaft) HaltNotify() <-chan struct{} { return nil }

func leaderHint(t *testing.T, err error) (string, bool) {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == ReasonNotLeader {
			return info.GetMetadata()[LeaderMetadata], true
		}
	}
	return "", false
}

// A NOT_LEADER refusal names the leader the member knows, so a client goes
// there next; other errors, and a member that knows no other leader, pass
// as they are.
func TestNotLeaderNamesTheLeader(t *testing.T) {
	info := &grpc.UnaryServerInfo{FullMethod: "/edgecell.v1.EdgeService/CheckNonces"}
	refuse := func(err error) grpc.UnaryHandler {
		return func(context.Context, any) (any, error) { return nil, toStatus(err) }
	}
	for _, tc := range []struct {
		leader, want string
	}{
		{"n2", "n2"},
		{"", ""},   // no leader known
		{"n1", ""}, // this member itself: it just lost leadership
	} {
		s := New(deps(followerRaft{leader: tc.leader}), Config{})
		_, err := s.hintLeaderUnary(context.Background(), nil, info, refuse(raftstore.ErrNotLeader))
		got, ok := leaderHint(t, err)
		if !ok || !isNotLeader(err) {
			t.Fatalf("leader %q: %v lost its NOT_LEADER reason", tc.leader, err)
		}
		if got != tc.want {
			t.Errorf("leader %q: the refusal names %q, want %q", tc.leader, got, tc.want)
		}
		if status.Convert(err).Message() != status.Convert(toStatus(raftstore.ErrNotLeader)).Message() {
			t.Errorf("leader %q: the message changed to %q", tc.leader, status.Convert(err).Message())
		}
		s.Close()
	}
	s := New(deps(followerRaft{leader: "n2"}), Config{})
	defer s.Close()
	other := errors.New("something else")
	if _, err := s.hintLeaderUnary(context.Background(), nil, info, refuse(other)); isNotLeader(err) {
		t.Fatalf("an unrelated error became NOT_LEADER: %v", err)
	}
	// A hint already present (a forwarded refusal from the leader's side) is kept.
	hinted := withLeaderHint(toStatus(raftstore.ErrNotLeader), "n3")
	_, err := s.hintLeaderUnary(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, hinted })
	if got, _ := leaderHint(t, err); got != "n3" {
		t.Fatalf("a refusal naming n3 was renamed to %q", got)
	}
}
