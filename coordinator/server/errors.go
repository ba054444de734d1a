package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/apierror"
)

// ErrOutcomeUnknown is returned when a forwarded write may or may not have
// been committed (the leader went away after receiving it). The caller must
// read before retrying a conditional write.
var ErrOutcomeUnknown = errors.New("write forwarded to the leader, outcome unknown")

// grpcCodes is the one table mapping this layer's and raftstore's sentinels to
// gRPC codes at the API boundary (etcd's toGRPCErrorMap), and to the
// ErrorInfo reason a program can test, for some.
var grpcCodes = []struct {
	err    error
	code   codes.Code
	hint   string
	reason string
}{
	{raftstore.ErrNotLeader, codes.Unavailable, "leadership changed; retry", ReasonNotLeader},
	{raftstore.ErrNoLeader, codes.Unavailable, "no leader: the cluster is electing one or this member has no quorum; retry", ""},
	{raftstore.ErrLeadershipLost, codes.Unavailable, "read the current state before retrying", ""},
	{raftstore.ErrTimeout, codes.Unavailable, "raft did not commit in time; retry", ""},
	{raftstore.ErrShutdown, codes.Unavailable, "this coordinator is shutting down; use another", ""},
	{raftstore.ErrUnknownMember, codes.NotFound, "", ""},
	{raftstore.ErrOpUnsupported, codes.FailedPrecondition, "", ""},
	{state.ErrUnknownOp, codes.Unavailable, "use another coordinator meanwhile", ReasonHalted},
	{ErrOutcomeUnknown, codes.Unavailable, "read the current state before retrying", ""},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "", ""},
	{context.Canceled, codes.Canceled, "", ""},
}

// The ErrorInfo words of this API; internal/apierror owns them, for the
// coordinators and their clients alike.
const (
	// ErrorDomain is the domain of the ErrorInfo details this API attaches.
	ErrorDomain = apierror.Domain
	// ReasonNotLeader: refused because the member is not the leader;
	// nothing was proposed, so any client may retry it on the leader, which
	// the LeaderMetadata metadata names when the refusing member knows it.
	ReasonNotLeader = apierror.NotLeader
	// ReasonHalted: refused because the member's state machine halted (its
	// binary cannot apply the log; see raftstore.Store.Halted): nothing was
	// proposed or read, so any client may retry it on another member.
	ReasonHalted = apierror.Halted
	// LeaderMetadata is the metadata key naming the leader in a
	// ReasonNotLeader refusal.
	LeaderMetadata = apierror.MetaLeader
)

// hintLeaderUnary names the leader in the NOT_LEADER refusals of the calls
// it wraps, when this member knows one other than itself, so that a client
// retries there at once instead of searching.
func (s *Server) hintLeaderUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err == nil || !isNotLeader(err) {
		return resp, err
	}
	leader, _ := s.members.Leader()
	if leader == "" || leader == s.members.Name() {
		return resp, err
	}
	return resp, withLeaderHint(err, leader)
}

// withLeaderHint returns err, a status with a NOT_LEADER ErrorInfo, with
// that ErrorInfo naming leader unless it names one already.
func withLeaderHint(err error, leader string) error {
	st := status.Convert(err)
	p := st.Proto()
	for i, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain || info.GetReason() != ReasonNotLeader || info.GetMetadata()[LeaderMetadata] != "" {
			continue
		}
		info = proto.Clone(info).(*errdetails.ErrorInfo)
		if info.Metadata == nil {
			info.Metadata = map[string]string{}
		}
		info.Metadata[LeaderMetadata] = leader
		a, aerr := anypb.New(info)
		if aerr != nil {
			return err
		}
		p.Details[i] = a
		return status.FromProto(p).Err()
	}
	return err
}

// isNotLeader reports whether err is a status carrying ReasonNotLeader.
func isNotLeader(err error) bool { return hasReason(err, ReasonNotLeader) }

// hasReason reports whether err is a status carrying an ErrorInfo of this
// API with reason.
func hasReason(err error, reason string) bool {
	_, ok := apierror.Find(err, reason)
	return ok
}

// toStatus converts an internal error into a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, m := range grpcCodes {
		if errors.Is(err, m.err) {
			msg := err.Error()
			if m.hint != "" {
				msg += " (" + m.hint + ")"
			}
			return withDetails(status.New(m.code, msg), err, m.reason).Err()
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// withDetails adds what programs read to st: the ErrorInfo reason, and for
// an op some members do not apply, a PreconditionFailure naming each
// ("member/<name>").
func withDetails(st *status.Status, err error, reason string) *status.Status {
	var details []protoadapt.MessageV1
	if reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
	}
	if ou := (*raftstore.OpUnsupportedError)(nil); errors.As(err, &ou) {
		pf := &errdetails.PreconditionFailure{}
		for _, name := range ou.Members {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
				Type: "OP_UNSUPPORTED", Subject: "member/" + name,
				Description: fmt.Sprintf("the binary of %s does not apply %s (Command op %d); upgrade it", name, ou.Op.Name, ou.Op.Number),
			})
		}
		details = append(details, pf)
	}
	if len(details) == 0 {
		return st
	}
	if d, derr := st.WithDetails(details...); derr == nil {
		return d
	}
	return st
}

// commandStatus converts a state-machine refusal into a gRPC status. The
// offending field goes both into the message (for people) and a BadRequest
// detail (for programs).
func commandStatus(ce *pb.CommandError) error {
	if ce == nil {
		return nil
	}
	msg := ce.GetMessage()
	if ce.GetField() != "" {
		msg = ce.GetField() + ": " + msg
	}
	var code codes.Code
	switch ce.GetCode() {
	case pb.CommandError_CODE_INVALID_ARGUMENT:
		code = codes.InvalidArgument
	case pb.CommandError_CODE_REVISION_MISMATCH:
		code = codes.Aborted
	case pb.CommandError_CODE_NOT_FOUND:
		code = codes.NotFound
	case pb.CommandError_CODE_FAILED_PRECONDITION:
		code = codes.FailedPrecondition
	case pb.CommandError_CODE_UNKNOWN_OP:
		code = codes.Unavailable
	default:
		code = codes.Unknown
	}
	st := status.New(code, msg)
	if ce.GetField() != "" {
		if withDetail, err := st.WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: ce.GetField(), Description: ce.GetMessage()}},
		}); err == nil {
			st = withDetail
		}
	}
	return st.Err()
}

func invalidArg(field, format string, args ...any) error {
	return commandStatus(&pb.CommandError{
		Code: pb.CommandError_CODE_INVALID_ARGUMENT, Field: field, Message: fmt.Sprintf(format, args...),
	})
}
