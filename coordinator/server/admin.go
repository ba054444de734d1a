package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// write proposes a command and turns a refusal into a gRPC status.
func (s *Server) write(ctx context.Context, cmd *pb.Command) (uint64, error) {
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return 0, toStatus(err)
	}
	if res.GetError() != nil {
		return 0, commandStatus(res.GetError())
	}
	return res.GetRevision(), nil
}

// read returns the one view a read answers from, at the requested
// consistency: every part of the answer, and the revision it returns, come
// from that view. Leader and linearizable reads reaching a follower were
// already forwarded by forwardUnary, so here the member is the leader (or
// the read is stale).
func (s *Server) read(ctx context.Context, c pb.Consistency) (state.View, error) {
	v, err := s.reader.Read(ctx, c)
	if err != nil {
		return state.View{}, toStatus(err)
	}
	return v, nil
}

// ApplyConfig implements AdminService.
func (s *Server) ApplyConfig(ctx context.Context, req *pb.ApplyConfigRequest) (*pb.ApplyConfigResponse, error) {
	if req.GetConfig() == nil {
		return nil, invalidArg("config", "a routing config is required")
	}
	// Stateless checks before the log: bad input never costs a raft entry.
	if ce := state.ValidateConfig(req.GetConfig()); ce != nil {
		return nil, commandStatus(ce)
	}
	rev, err := s.write(ctx, &pb.Command{
		ExpectRevision: req.GetExpectRevision(),
		Op:             &pb.Command_ApplyConfig{ApplyConfig: &pb.ApplyConfigOp{Config: req.GetConfig()}},
	})
	if err != nil {
		return nil, err
	}
	return &pb.ApplyConfigResponse{Revision: rev}, nil
}

// GetConfig implements AdminService.
func (s *Server) GetConfig(ctx context.Context, req *pb.GetConfigRequest) (*pb.GetConfigResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.GetConfigResponse{Config: v.Config(), Revision: v.Revision()}, nil
}

// PutCell implements AdminService.
func (s *Server) PutCell(ctx context.Context, req *pb.PutCellRequest) (*pb.PutCellResponse, error) {
	if req.GetCell() == nil {
		return nil, invalidArg("cell", "a cell is required")
	}
	rev, err := s.write(ctx, &pb.Command{
		ExpectRevision: req.GetExpectRevision(),
		Op:             &pb.Command_PutCell{PutCell: &pb.PutCellOp{Cell: req.GetCell()}},
	})
	if err != nil {
		return nil, err
	}
	return &pb.PutCellResponse{Revision: rev}, nil
}

// GetCell implements AdminService.
func (s *Server) GetCell(ctx context.Context, req *pb.GetCellRequest) (*pb.GetCellResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	c, ok := v.Cell(req.GetId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "cell %q not found", req.GetId())
	}
	return &pb.GetCellResponse{Cell: c, Revision: v.Revision()}, nil
}

// ListCells implements AdminService.
func (s *Server) ListCells(ctx context.Context, req *pb.ListCellsRequest) (*pb.ListCellsResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.ListCellsResponse{Cells: v.Cells(), Revision: v.Revision()}, nil
}

// DeleteCell implements AdminService.
func (s *Server) DeleteCell(ctx context.Context, req *pb.DeleteCellRequest) (*pb.DeleteCellResponse, error) {
	if req.GetId() == "" {
		return nil, invalidArg("id", "a cell id is required")
	}
	rev, err := s.write(ctx, &pb.Command{
		ExpectRevision: req.GetExpectRevision(),
		Op:             &pb.Command_DeleteCell{DeleteCell: &pb.DeleteCellOp{Id: req.GetId()}},
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteCellResponse{Revision: rev}, nil
}

// PutPlacement implements AdminService.
func (s *Server) PutPlacement(ctx context.Context, req *pb.PutPlacementRequest) (*pb.PutPlacementResponse, error) {
	if req.GetPlacement() == nil {
		return nil, invalidArg("placement", "a placement is required")
	}
	rev, err := s.write(ctx, &pb.Command{
		ExpectRevision: req.GetExpectRevision(),
		Op:             &pb.Command_PutPlacement{PutPlacement: &pb.PutPlacementOp{Placement: req.GetPlacement()}},
	})
	if err != nil {
		return nil, err
	}
	return &pb.PutPlacementResponse{Revision: rev}, nil
}

// GetPlacement implements AdminService.
func (s *Server) GetPlacement(ctx context.Context, req *pb.GetPlacementRequest) (*pb.GetPlacementResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	p, ok := v.Placement(req.GetKey())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no placement for routing key %q", req.GetKey())
	}
	return &pb.GetPlacementResponse{Placement: p, Revision: v.Revision()}, nil
}

// ListPlacements implements AdminService.
func (s *Server) ListPlacements(ctx context.Context, req *pb.ListPlacementsRequest) (*pb.ListPlacementsResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	ps, next := v.Placements(req.GetPrefix(), req.GetStartAfter(), int(req.GetLimit()))
	return &pb.ListPlacementsResponse{Placements: ps, Revision: v.Revision(), NextStartAfter: next}, nil
}

// DeletePlacement implements AdminService.
func (s *Server) DeletePlacement(ctx context.Context, req *pb.DeletePlacementRequest) (*pb.DeletePlacementResponse, error) {
	if req.GetKey() == "" {
		return nil, invalidArg("key", "a routing key is required")
	}
	rev, err := s.write(ctx, &pb.Command{
		ExpectRevision: req.GetExpectRevision(),
		Op:             &pb.Command_DeletePlacement{DeletePlacement: &pb.DeletePlacementOp{Key: req.GetKey()}},
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeletePlacementResponse{Revision: rev}, nil
}
