package coordconn

import "github.com/edgecell/edgecell/internal/apierror"

// NotLeader reports whether err (or an error it wraps) is a gRPC status
// carrying the coordinators' NOT_LEADER ErrorInfo (internal/apierror), and
// the leader its metadata names ("" when it names none). It looks at the
// ErrorInfo only, never at the message.
func NotLeader(err error) (leader string, ok bool) {
	info, ok := apierror.Find(err, apierror.NotLeader)
	if !ok {
		return "", false
	}
	return info.GetMetadata()[apierror.MetaLeader], true
}
