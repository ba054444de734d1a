package server

import (
	"context"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The breaker and health RPCs. Edge reports are writes: they go through
// propose (forwarded to the leader, which stamps its clock on the command),
// one raft entry per report for now. A report's batch_id travels into the
// command, so a batch the edge resends after an unknown outcome is counted
// once (coordinator/state, reports.go); the answer to a retry is the same
// success as the first one's. Reads are served like the other admin
// reads, at the requested consistency.

// ReportOutcomes implements EdgeService.
func (s *Server) ReportOutcomes(ctx context.Context, req *pb.ReportOutcomesRequest) (*pb.ReportOutcomesResponse, error) {
	if req.GetEdge() == "" {
		return nil, invalidArg("edge", "the reporting edge's id is required")
	}
	if len(req.GetOutcomes()) == 0 {
		return &pb.ReportOutcomesResponse{Revision: s.reader.View().Revision()}, nil
	}
	rev, err := s.reports.submit(ctx, &reportCall{outcomes: &pb.ReportOutcomesOp{
		Edge: req.GetEdge(), Outcomes: req.GetOutcomes(), BatchId: req.GetBatchId(),
	}})
	if err != nil {
		return nil, err
	}
	return &pb.ReportOutcomesResponse{Revision: rev}, nil
}

// ReportHealth implements EdgeService.
func (s *Server) ReportHealth(ctx context.Context, req *pb.ReportHealthRequest) (*pb.ReportHealthResponse, error) {
	if req.GetEdge() == "" {
		return nil, invalidArg("edge", "the reporting edge's id is required")
	}
	if len(req.GetChecks()) == 0 {
		return &pb.ReportHealthResponse{Revision: s.reader.View().Revision()}, nil
	}
	if !s.edgeConnected(ctx, req.GetEdge()) {
		return nil, status.Errorf(codes.FailedPrecondition, "edge %q has no watch stream open to any member: health votes count only from connected edges", req.GetEdge())
	}
	rev, err := s.reports.submit(ctx, &reportCall{health: &pb.ReportHealthOp{
		Edge: req.GetEdge(), Region: req.GetRegion(), Checks: req.GetChecks(), BatchId: req.GetBatchId(),
	}})
	if err != nil {
		return nil, err
	}
	return &pb.ReportHealthResponse{Revision: rev}, nil
}

// AcquireProbe implements EdgeService.
func (s *Server) AcquireProbe(ctx context.Context, req *pb.AcquireProbeRequest) (*pb.AcquireProbeResponse, error) {
	res, err := s.propose(ctx, &pb.Command{Op: &pb.Command_GrantProbe{GrantProbe: &pb.GrantProbeOp{
		Endpoint: req.GetEndpoint(), Edge: req.GetEdge(),
	}}})
	if err != nil {
		return nil, toStatus(err)
	}
	if res.GetError() != nil {
		return nil, commandStatus(res.GetError())
	}
	return &pb.AcquireProbeResponse{Granted: res.GetProbeGranted(), Revision: res.GetRevision()}, nil
}

// ReportProbe implements EdgeService.
func (s *Server) ReportProbe(ctx context.Context, req *pb.ReportProbeRequest) (*pb.ReportProbeResponse, error) {
	rev, err := s.write(ctx, &pb.Command{Op: &pb.Command_ProbeResult{ProbeResult: &pb.ProbeResultOp{
		Endpoint: req.GetEndpoint(), Edge: req.GetEdge(), Ok: req.GetOk(), Detail: req.GetDetail(),
	}}})
	if err != nil {
		return nil, err
	}
	return &pb.ReportProbeResponse{Revision: rev}, nil
}

// ListBreakers implements AdminService.
func (s *Server) ListBreakers(ctx context.Context, req *pb.ListBreakersRequest) (*pb.ListBreakersResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.ListBreakersResponse{Breakers: v.Breakers(), Revision: v.Revision()}, nil
}

// ResetBreaker implements AdminService.
func (s *Server) ResetBreaker(ctx context.Context, req *pb.ResetBreakerRequest) (*pb.ResetBreakerResponse, error) {
	if req.GetEndpoint() == "" {
		return nil, invalidArg("endpoint", "an endpoint id is required")
	}
	rev, err := s.write(ctx, &pb.Command{Op: &pb.Command_ResetBreaker{ResetBreaker: &pb.ResetBreakerOp{Endpoint: req.GetEndpoint()}}})
	if err != nil {
		return nil, err
	}
	s.log.Info("breaker reset", "endpoint", req.GetEndpoint(), "revision", rev)
	return &pb.ResetBreakerResponse{Revision: rev}, nil
}

// ListHealth implements AdminService.
func (s *Server) ListHealth(ctx context.Context, req *pb.ListHealthRequest) (*pb.ListHealthResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.ListHealthResponse{Endpoints: v.Health(), Revision: v.Revision()}, nil
}
