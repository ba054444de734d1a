package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// placementPage is how many placements one ListPlacements call asks for, so that
// a large table never hits gRPC's message size limit.
const placementPage = 5000

func (a *app) placementCommand() *cobra.Command {
	cmd := groupCommand("placement", "Map routing keys to cells")
	cmd.AddCommand(a.placementPutCommand(), a.placementGetCommand(), a.placementListCommand(), a.placementDeleteCommand())
	return cmd
}

func (a *app) placementPutCommand() *cobra.Command {
	var expect uint64
	cmd := &cobra.Command{
		Use:     "put KEY CELL",
		Short:   "Route a key to a cell (the cell must exist)",
		Example: "  edgecell placement put tenant-7 cell-2",
		Args:    exactArgs("KEY", "CELL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(cmd, fmt.Sprintf("placed %q on cell %q", args[0], args[1]), func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				return c.PutPlacement(ctx, &pb.PutPlacementRequest{
					Placement: &pb.Placement{Key: args[0], Cell: args[1]}, ExpectRevision: expect,
				})
			})
		},
	}
	addExpectFlag(cmd, &expect, "write")
	return cmd
}

func (a *app) placementGetCommand() *cobra.Command {
	var consistency consistencyFlag
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Show which cell a key is placed on",
		Args:  exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.Placement, error) {
				resp, err := c.GetPlacement(ctx, &pb.GetPlacementRequest{Key: args[0], Consistency: consistency.level()}, opt)
				return resp.GetPlacement(), err
			}, func(w io.Writer, p *pb.Placement) { placementTable(w, p) })
		},
	}
	addConsistencyFlag(cmd, &consistency)
	return cmd
}

func (a *app) placementListCommand() *cobra.Command {
	var (
		consistency consistencyFlag
		prefix      string
		limit       uint32
	)
	cmd := &cobra.Command{
		Use:   "list [--prefix P]",
		Short: "List placements in key order",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c pb.AdminServiceClient) error {
				return a.listPlacements(ctx, c, consistency.level(), prefix, limit)
			})
		},
	}
	addConsistencyFlag(cmd, &consistency)
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys that start with this")
	cmd.Flags().Uint32Var(&limit, "limit", 0, "at most this many (0: all)")
	return cmd
}

// listPlacements pages through ListPlacements and prints the result as one list.
func (a *app) listPlacements(ctx context.Context, c pb.AdminServiceClient, consistency pb.Consistency, prefix string, limit uint32) error {
	// Pages are read one after another, each at its own revision; the
	// revision reported is the first page's.
	all := &pb.ListPlacementsResponse{}
	req := &pb.ListPlacementsRequest{Consistency: consistency, Prefix: prefix}
	for {
		req.Limit = placementPage
		if limit > 0 {
			req.Limit = min(placementPage, limit-uint32(len(all.Placements)))
		}
		resp, err := c.ListPlacements(ctx, req, readRetry())
		if err != nil {
			return err
		}
		if all.Revision == 0 {
			all.Revision = resp.GetRevision()
		}
		all.Placements = append(all.Placements, resp.GetPlacements()...)
		all.NextStartAfter = resp.GetNextStartAfter()
		if all.NextStartAfter == "" || (limit > 0 && uint32(len(all.Placements)) >= limit) {
			break
		}
		req.StartAfter = all.NextStartAfter
	}
	return a.show(all, func(w io.Writer) { placementTable(w, all.GetPlacements()...) })
}

func placementTable(w io.Writer, ps ...*pb.Placement) {
	row(w, "KEY", "CELL", "REVISION")
	for _, p := range ps {
		row(w, p.GetKey(), p.GetCell(), p.GetModRevision())
	}
}

func (a *app) placementDeleteCommand() *cobra.Command {
	var expect uint64
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Remove a key's placement (it then routes to the default cell, if any)",
		Args:  exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(cmd, fmt.Sprintf("deleted placement %q", args[0]), func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				return c.DeletePlacement(ctx, &pb.DeletePlacementRequest{Key: args[0], ExpectRevision: expect})
			})
		},
	}
	addExpectFlag(cmd, &expect, "delete")
	return cmd
}
