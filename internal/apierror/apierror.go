// Package apierror owns the machine-readable part of the coordinators' gRPC
// errors: the google.rpc.ErrorInfo domain, reasons and metadata keys that
// the coordinators attach (coordinator/server) and that their clients (the
// edge's coordinator pool, the CLI) test, so that no client has to match a
// message. It is the one place both sides take the words from.
package apierror

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every detail the coordinators attach.
const Domain = "edgecell.io"

// Reasons.
const (
	// NotLeader: the member that answered is not the leader and could not
	// relay the call to it. Nothing was proposed: the call may be retried
	// anywhere, best on the leader the MetaLeader metadata names.
	NotLeader = "NOT_LEADER"
	// Halted: the member's state machine stopped because its binary cannot
	// apply the log (see coordinator/raftstore). Nothing was proposed or
	// read: retry on another member.
	Halted = "HALTED"
)

// MetaLeader is the metadata key of a NotLeader refusal that names the
// leader (its member name), when the refusing member knew it.
const MetaLeader = "leader"

// Find returns the ErrorInfo of this API with reason that err (or an error
// it wraps) carries as a gRPC status detail.
func Find(err error, reason string) (*errdetails.ErrorInfo, bool) {
	if err == nil {
		return nil, false
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return nil, false
	}
	for _, d := range se.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain && info.GetReason() == reason {
			return info, true
		}
	}
	return nil, false
}
