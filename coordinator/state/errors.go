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
