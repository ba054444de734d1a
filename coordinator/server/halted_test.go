package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// haltedRaft is a member whose state machine halted on rotate_key.
type haltedRaft struct {
	member // the methods these tests do not need: calling one panics
}

func (haltedRaft) Name() string { return "c3" }
func (haltedRaft) Halted() error {
	return &state.HaltError{Index: 29, Op: state.Op{Number: 25, Name: "rotate_key"}}
}

// A halted member answers every call that reads or writes the state with
// UNAVAILABLE saying what it cannot apply and what to do, with the HALTED
// reason (nothing was proposed: retry elsewhere); NodeStatus and the health
// service still run.
func TestHaltedMemberRefusesStateCalls(t *testing.T) {
	s := New(deps(haltedRaft{}), Config{})
	defer s.Close()
	called := false
	handler := func(context.Context, any) (any, error) { called = true; return &pb.NodeStatusResponse{}, nil }
	for _, method := range []string{pb.AdminService_ListKeys_FullMethodName, pb.AdminService_RotateKey_FullMethodName, pb.EdgeService_CheckNonces_FullMethodName} {
		_, err := s.haltedUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, handler)
		st := status.Convert(err)
		if called || st.Code() != codes.Unavailable || !hasReason(err, ReasonHalted) {
			t.Fatalf("%s on a halted member: %v (handler called: %v); want UNAVAILABLE with reason %s", method, err, called, ReasonHalted)
		}
		for _, want := range []string{"coordinator c3", "rotate_key", "index 29", "must be upgraded"} {
			if !strings.Contains(st.Message(), want) {
				t.Errorf("%s refused with %q, which does not say %q", method, st.Message(), want)
			}
		}
	}
	for _, method := range []string{pb.ClusterService_NodeStatus_FullMethodName, grpc_health_v1.Health_Check_FullMethodName} {
		called = false
		if _, err := s.haltedUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, handler); err != nil || !called {
			t.Errorf("%s on a halted member: %v (handler called: %v); want it served", method, err, called)
		}
	}
	err := s.haltedStream(nil, nil, &grpc.StreamServerInfo{FullMethod: pb.EdgeService_Watch_FullMethodName}, func(any, grpc.ServerStream) error {
		t.Fatal("Watch started on a halted member")
		return nil
	})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Watch on a halted member: %v, want UNAVAILABLE", err)
	}
}
