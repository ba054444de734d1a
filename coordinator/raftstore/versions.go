package raftstore

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// The raft side of versioned operations (the rules are in the state
// package doc, "Versioned operations"): the leader proposes an op only when
// every member's binary applies it or it is ignorable, and a member whose
// state machine halted stops taking part in anything but raft's own
// replication and voting.

// proposable returns cmd's op, or ErrOpUnsupported naming the members of
// the raft configuration (voters and non-voters: both apply the log) whose
// binary does not apply it, by their member records (a member without a
// record, or whose record advertises no ops, applies the legacy set). This
// member's own binary counts whatever its record says.
//
// A record can lag its binary: a member just added, or restarted on an older
// binary, may not have re-registered yet. An op that slips through such a
// window halts that member instead of letting it diverge.
func (s *Store) proposable(cmd *pb.Command) (state.Op, error) {
	op := state.OpOf(cmd)
	switch {
	case op.Number == 0:
		return op, fmt.Errorf("raftstore: command has no operation")
	case op.Known && op.Ignorable:
		return op, nil
	}
	st := s.View()
	if op.Known && st.EveryMemberApplies(op.Number) {
		return op, nil // the usual case: no need to read the configuration
	}
	servers, err := s.Servers()
	if err != nil {
		return op, err
	}
	names := make([]string, 0, len(servers))
	for _, srv := range servers {
		names = append(names, srv.Name)
	}
	lacking := st.MembersLacking(op.Number, names)
	if !op.Known && !slices.Contains(lacking, s.cfg.Name) {
		lacking = append([]string{s.cfg.Name}, lacking...)
	}
	if len(lacking) == 0 {
		return op, nil
	}
	return op, &OpUnsupportedError{Op: op, Members: lacking}
}

// OpUnsupportedError is Propose's refusal of a command whose op the binary
// of some members does not apply; it wraps ErrOpUnsupported.
type OpUnsupportedError struct {
	Op      state.Op
	Members []string // in raft configuration order
}

func (e *OpUnsupportedError) Error() string {
	return fmt.Sprintf("%v: %s (Command op %d) is not applied by the binary of member %s; upgrade %s to a binary that applies it and restart %s (a member advertises the ops it applies when it starts), then retry",
		ErrOpUnsupported, e.Op.Name, e.Op.Number, strings.Join(e.Members, ", "), them(e.Members), them(e.Members))
}

func (e *OpUnsupportedError) Unwrap() error { return ErrOpUnsupported }

func them(names []string) string {
	if len(names) == 1 {
		return "it"
	}
	return "them"
}

// Halted returns nil while this member's state machine applies commands,
// and once it halted, the error saying which op at which index its binary
// cannot apply (it wraps state.ErrUnknownOp).
func (s *Store) Halted() error { return s.fsm.haltError() }

// HaltNotify returns a channel closed when the state machine halts.
func (s *Store) HaltNotify() <-chan struct{} { return s.fsm.halted }

// yieldLeadershipWhileHalted hands leadership away whenever this member
// holds it after its state machine halted: a halted leader would commit
// entries it cannot apply and answer nothing. Raft may elect it again (its
// log is as good as anyone's); it then yields again.
func (s *Store) yieldLeadershipWhileHalted() {
	select {
	case <-s.fsm.halted:
	case <-s.closed:
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if s.raft.State() == raft.Leader {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("halted leader could not hand leadership away yet", "error", err)
			}
		}
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
	}
}

// stampIgnorable appends Command.ignorable to an encoded Command (the last
// occurrence wins, as in stampNow).
func stampIgnorable(data []byte, ignorable bool) []byte {
	data = protowire.AppendTag(data, ignorableField, protowire.VarintType)
	return protowire.AppendVarint(data, protowire.EncodeBool(ignorable))
}

// ignorableField is Command.ignorable's field number.
const ignorableField = 3
