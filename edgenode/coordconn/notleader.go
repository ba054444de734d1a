package coordconn

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// The coordinators' not-leader refusal: an errdetails.ErrorInfo with this
// Domain and Reason (coordinator/server.ErrorDomain and ReasonNotLeader,
// repeated here because the edge does not import the coordinator), whose
// metadata may name the leader under leaderKey.
const (
	ErrorDomain     = "edgecell.io"
	ReasonNotLeader = "NOT_LEADER"
	leaderKey       = "leader"
)

// NotLeader reports whether err (or an error it wraps) is a gRPC status
// carrying the coordinators' NOT_LEADER ErrorInfo, and the leader its
// metadata names ("" when it names none). It looks at the ErrorInfo only,
// never at the message.
func NotLeader(err error) (leader string, ok bool) {
	if err == nil {
		return "", false
	}
	st, isStatus := status.FromError(err)
	if !isStatus {
		return "", false
	}
	for _, d := range st.Details() {
		if info, is := d.(*errdetails.ErrorInfo); is && info.GetDomain() == ErrorDomain && info.GetReason() == ReasonNotLeader {
			return info.GetMetadata()[leaderKey], true
		}
	}
	return "", false
}
