package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/raftstore"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestCommandStatusMapsCodesAndNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		code pb.CommandError_Code
		want codes.Code
	}{
		{pb.CommandError_CODE_INVALID_ARGUMENT, codes.InvalidArgument},
		{pb.CommandError_CODE_REVISION_MISMATCH, codes.Aborted},
		{pb.CommandError_CODE_NOT_FOUND, codes.NotFound},
		{pb.CommandError_CODE_FAILED_PRECONDITION, codes.FailedPrecondition},
	} {
		err := commandStatus(&pb.CommandError{Code: tc.code, Field: "cells[1].id", Message: `duplicate cell id "a"`})
		st := status.Convert(err)
		if st.Code() != tc.want {
			t.Errorf("%v: code %v, want %v", tc.code, st.Code(), tc.want)
		}
		if st.Message() != `cells[1].id: duplicate cell id "a"` {
			t.Errorf("%v: message %q", tc.code, st.Message())
		}
		var br *errdetails.BadRequest
		for _, d := range st.Details() {
			if b, ok := d.(*errdetails.BadRequest); ok {
				br = b
			}
		}
		if br == nil || br.GetFieldViolations()[0].GetField() != "cells[1].id" {
			t.Errorf("%v: BadRequest detail missing or wrong: %v", tc.code, st.Details())
		}
	}
	if commandStatus(nil) != nil {
		t.Error("nil command error must map to nil")
	}
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("propose: %w", raftstore.ErrNotLeader), codes.Unavailable},
		{raftstore.ErrNoLeader, codes.Unavailable},
		{raftstore.ErrLeadershipLost, codes.Unavailable},
		{fmt.Errorf("%w: %q", raftstore.ErrUnknownMember, "n9"), codes.NotFound},
		{ErrOutcomeUnknown, codes.Unavailable},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{status.Error(codes.PermissionDenied, "kept as is"), codes.PermissionDenied},
		{errors.New("something else"), codes.Internal},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
	if toStatus(nil) != nil {
		t.Error("nil must map to nil")
	}
}

func TestNeedsLeader(t *testing.T) {
	stale := pb.Consistency_CONSISTENCY_STALE
	for _, tc := range []struct {
		method string
		req    any
		want   bool
	}{
		{pb.AdminService_GetConfig_FullMethodName, &pb.GetConfigRequest{}, true}, // default: linearizable
		{pb.AdminService_GetConfig_FullMethodName, &pb.GetConfigRequest{Consistency: stale}, false},
		{pb.AdminService_ListPlacements_FullMethodName, &pb.ListPlacementsRequest{Consistency: pb.Consistency_CONSISTENCY_LEADER}, true},
		{pb.AdminService_AddMember_FullMethodName, &pb.AddMemberRequest{}, true},
		{pb.AdminService_TransferLeadership_FullMethodName, &pb.TransferLeadershipRequest{}, true},
		{pb.AdminService_PutCell_FullMethodName, &pb.PutCellRequest{}, true}, // every write runs on the leader
		{pb.EdgeService_ReportOutcomes_FullMethodName, &pb.ReportOutcomesRequest{}, true},
		{pb.ClusterService_RegisterMember_FullMethodName, &pb.RegisterMemberRequest{}, true},
		{pb.EdgeService_Ack_FullMethodName, &pb.AckRequest{}, false},
		{pb.AdminService_ListEdges_FullMethodName, &pb.ListEdgesRequest{}, false},
		{pb.AdminService_ClusterStatus_FullMethodName, &pb.ClusterStatusRequest{}, false},
	} {
		if got := needsLeader(tc.method, tc.req); got != tc.want {
			t.Errorf("%s %v: %v, want %v", tc.method, tc.req, got, tc.want)
		}
	}
}

func TestNewReplyKnowsEveryAdminMethod(t *testing.T) {
	for _, m := range pb.AdminService_ServiceDesc.Methods {
		full := "/" + pb.AdminService_ServiceDesc.ServiceName + "/" + m.MethodName
		r, err := newReply(full)
		if err != nil {
			t.Fatalf("%s: %v", full, err)
		}
		if got, want := string(r.ProtoReflect().Descriptor().Name()), m.MethodName+"Response"; got != want {
			t.Errorf("%s: reply type %s, want %s", full, got, want)
		}
	}
	if _, err := newReply("/edgecell.v1.AdminService/NoSuchMethod"); err == nil {
		t.Error("unknown method must be an error")
	}
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestEdgeRegistry(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r := newEdgeRegistry("n1", clk.Now, time.Minute)

	done := r.connected("e1", "us-east", 5)
	r.ack(&pb.AckRequest{Edge: "e1", Region: "us-east", AppliedRevision: 9})
	r.ack(&pb.AckRequest{Edge: "e1", AppliedRevision: 7}) // late, out-of-order ack: applied never goes back
	r.ack(&pb.AckRequest{Edge: "e1", AppliedRevision: 9, RejectedRevision: 10, RejectReason: "unknown cell"})
	got := r.list()
	if len(got) != 1 {
		t.Fatalf("want one edge, got %v", got)
	}
	e := got[0]
	if !e.GetConnected() || e.GetAppliedRevision() != 9 || e.GetRegion() != "us-east" || e.GetCoordinator() != "n1" ||
		e.GetRejectedRevision() != 10 || e.GetRejectReason() != "unknown cell" {
		t.Fatalf("unexpected status %v", e)
	}

	// A reconnect overlapping the old stream keeps it connected until both end.
	done2 := r.connected("e1", "us-east", 9)
	done()
	if !r.list()[0].GetConnected() {
		t.Fatal("edge with an open stream shown as disconnected")
	}
	done2()
	if r.list()[0].GetConnected() {
		t.Fatal("edge without streams shown as connected")
	}
	clk.now = clk.now.Add(2 * time.Minute)
	if got := r.list(); len(got) != 0 {
		t.Fatalf("disconnected edge kept past retention: %v", got)
	}
}

func TestPreferEdge(t *testing.T) {
	connected := &pb.EdgeStatus{Connected: true, LastAckUnixMs: 1}
	recent := &pb.EdgeStatus{LastAckUnixMs: 100}
	older := &pb.EdgeStatus{LastAckUnixMs: 50}
	if !preferEdge(connected, recent) || preferEdge(recent, connected) {
		t.Error("a connected entry must win over a disconnected one")
	}
	if !preferEdge(recent, older) || preferEdge(older, recent) {
		t.Error("among disconnected entries the most recent must win")
	}
}
