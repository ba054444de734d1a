package raftstore

import "errors"

var (
	// ErrNotLeader is returned by operations that only the leader can perform
	// when this member is not the leader. Callers forward to the leader.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader is returned when the cluster has no known leader (an
	// election is under way, or this member is cut off from a quorum).
	ErrNoLeader = errors.New("no raft leader")
	// ErrTimeout is returned when raft did not commit or confirm in time.
	ErrTimeout = errors.New("raft operation timed out")
	// ErrLeadershipLost is returned when leadership was lost after a command
	// was appended but before it committed: it may or may not be applied.
	ErrLeadershipLost = errors.New("leadership lost before the command committed; it may or may not be applied")
	// ErrShutdown is returned once the store is closed.
	ErrShutdown = errors.New("raft store is shut down")
	// ErrOpUnsupported is returned by Propose for a command whose op some
	// member's binary does not apply (the wrapping message names them):
	// nothing was proposed. Upgrade those members, then retry.
	ErrOpUnsupported = errors.New("not every member applies this operation")
	// ErrUnknownMember is returned by membership operations naming a member
	// that is not in the raft configuration.
	ErrUnknownMember = errors.New("unknown member")
)
