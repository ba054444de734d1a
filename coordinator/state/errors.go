package state

import (
	"errors"
	"fmt"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// ErrInvalidSnapshot is returned (wrapped) by FromState when the snapshot is
// not a state this package could have produced: invalid config, stamps that
// do not fit the revision, duplicate or invalid members. The wrapping message
// names the offending field.
var ErrInvalidSnapshot = errors.New("invalid state snapshot")

// ErrUnknownOp is wrapped by the HaltError of a store that met a committed
// command whose op its binary does not apply.
var ErrUnknownOp = errors.New("this member's binary does not apply a committed operation")

// HaltError says why a store stopped applying: the op at Index is one this
// binary does not apply and the command was not ignorable.
//
// With Snapshot set, it was a raft snapshot taken at Index whose state had
// applied that op (Snapshot.ops_applied), which the store refused to
// restore.
type HaltError struct {
	Index    uint64
	Op       Op
	Snapshot bool
}

func (e *HaltError) Error() string {
	what := fmt.Sprintf("apply %s (Command field %d) at index %d", e.Op.Name, e.Op.Number, e.Index)
	if e.Snapshot {
		what = fmt.Sprintf("restore the snapshot at index %d, whose state applied %s (Command field %d)", e.Index, e.Op.Name, e.Op.Number)
	}
	return fmt.Sprintf("this member's binary cannot %s and must be upgraded: "+
		"it applies and serves nothing until it is restarted with a binary that applies op %d, which replays the log from its last snapshot",
		what, e.Op.Number)
}

func (e *HaltError) Unwrap() error { return ErrUnknownOp }

// commandError builds the refusal returned to the proposer. field is a path
// into the command's payload (for example "cells[2].endpoints[0].region").
func commandError(code pb.CommandError_Code, field, format string, args ...any) *pb.CommandError {
	return &pb.CommandError{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *pb.CommandError {
	return commandError(pb.CommandError_CODE_INVALID_ARGUMENT, field, format, args...)
}

func notFound(field, format string, args ...any) *pb.CommandError {
	return commandError(pb.CommandError_CODE_NOT_FOUND, field, format, args...)
}

func failedPrecondition(field, format string, args ...any) *pb.CommandError {
	return commandError(pb.CommandError_CODE_FAILED_PRECONDITION, field, format, args...)
}

func revisionMismatch(expected, current uint64) *pb.CommandError {
	return commandError(pb.CommandError_CODE_REVISION_MISMATCH, "expect_revision",
		"expected revision %d but the current revision is %d; read the state again and retry", expected, current)
}

// snapshotError wraps a validation failure of a snapshot in ErrInvalidSnapshot.
func snapshotError(prefix string, e *pb.CommandError) error {
	return fmt.Errorf("%w: %s%s: %s", ErrInvalidSnapshot, prefix, e.GetField(), e.GetMessage())
}
