package apierror

import (
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func withInfo(t *testing.T, domain, reason string) error {
	t.Helper()
	st, err := status.New(codes.Unavailable, "not the leader: NOT_LEADER").WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason, Metadata: map[string]string{MetaLeader: "n2"}})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// A reason is found by its ErrorInfo only: in this domain, wrapped or not,
// and never from a message that merely says it.
func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the ErrorInfo", withInfo(t, Domain, NotLeader), true},
		{"wrapped", fmt.Errorf("nonce check: %w", withInfo(t, Domain, NotLeader)), true},
		{"another reason", withInfo(t, Domain, Halted), false},
		{"another domain", withInfo(t, "example.com", NotLeader), false},
		{"only the message", status.Error(codes.Unavailable, "NOT_LEADER"), false},
		{"not a status", fmt.Errorf("NOT_LEADER"), false},
		{"nil", nil, false},
	} {
		info, ok := Find(tc.err, NotLeader)
		if ok != tc.want {
			t.Errorf("%s: Find = %v, want %v", tc.name, ok, tc.want)
		}
		if ok && info.GetMetadata()[MetaLeader] != "n2" {
			t.Errorf("%s: metadata %v lost the leader", tc.name, info.GetMetadata())
		}
	}
}
