package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func (a *app) cellCommand() *cobra.Command {
	cmd := groupCommand("cell", "Create, list, inspect and delete cells")
	cmd.AddCommand(a.cellPutCommand(), a.cellListCommand(), a.cellGetCommand(), a.cellDeleteCommand())
	return cmd
}

func (a *app) cellPutCommand() *cobra.Command {
	var (
		endpoints []string
		file      string
		expect    uint64
	)
	cmd := &cobra.Command{
		Use:   "put ID --endpoint NAME=URL,region=R[,weight=W] ... | put [ID] -f cell.yaml",
		Short: "Create a cell or replace its endpoints",
		Long: `Put creates the cell or replaces it whole: the endpoints given are all the cell
has afterwards. Each --endpoint is NAME=URL,region=REGION[,weight=W] (or the
explicit id=NAME,url=URL,region=REGION,weight=W). Endpoint ids are unique across
all cells; regions must be in the routing config. With -f the cell is read from
a YAML or JSON file with the fields of one entry of 'cells' in the config file.`,
		Example: `  edgecell cell put cell-3 \
    --endpoint c3-use1=http://10.0.3.10:8080,region=us-east,weight=2 \
    --endpoint c3-euw1=http://10.1.3.10:8080,region=eu-west`,
		Args: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return exactArgs("ID")(cmd, args)
			}
			if len(args) > 1 {
				return usagef("cell put -f takes at most one argument (the cell id)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cell, err := a.cellFromFlags(args, file, endpoints)
			if err != nil {
				return err
			}
			return a.write(cmd, fmt.Sprintf("stored cell %q", cell.GetId()), func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				return c.PutCell(ctx, &pb.PutCellRequest{Cell: cell, ExpectRevision: expect})
			})
		},
	}
	cmd.Flags().StringArrayVar(&endpoints, "endpoint", nil, "an endpoint: NAME=URL,region=REGION[,weight=W] (repeat for more)")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "read the cell from this YAML or JSON file (- for standard input)")
	addExpectFlag(cmd, &expect, "write")
	cmd.MarkFlagsMutuallyExclusive("endpoint", "filename")
	return cmd
}

func (a *app) cellFromFlags(args []string, file string, specs []string) (*pb.Cell, error) {
	cell := &pb.Cell{}
	if file != "" {
		if err := a.readFile(file, cell); err != nil {
			return nil, err
		}
		if len(args) == 1 {
			if cell.GetId() != "" && cell.GetId() != args[0] {
				return nil, usagef("the file describes cell %q, not %q", cell.GetId(), args[0])
			}
			cell.Id = args[0]
		}
		if cell.GetId() == "" {
			return nil, usagef("give the cell id as an argument or as 'id' in the file")
		}
		return cell, nil
	}
	if len(specs) == 0 {
		return nil, usagef("give the cell's endpoints with --endpoint (or the cell with -f)")
	}
	cell.Id = args[0]
	for _, s := range specs {
		ep, err := parseEndpoint(s)
		if err != nil {
			return nil, usagef("--endpoint %q: %v", s, err)
		}
		cell.Endpoints = append(cell.Endpoints, ep)
	}
	return cell, nil
}

// parseEndpoint reads NAME=URL,region=R[,weight=W] or id=NAME,url=URL,region=R[,weight=W].
func parseEndpoint(spec string) (*pb.Endpoint, error) {
	ep := &pb.Endpoint{}
	for i, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", part)
		}
		switch k {
		case "id":
			if strings.Contains(v, "://") {
				return nil, fmt.Errorf("id=%s looks like a URL: write NAME=URL or id=NAME,url=URL", v)
			}
			ep.Id = v
		case "url":
			ep.Url = v
		case "region":
			ep.Region = v
		case "weight":
			w, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("weight %q: want a whole number", v)
			}
			ep.Weight = uint32(w)
		default:
			if i != 0 {
				return nil, fmt.Errorf("unknown key %q (want region or weight after NAME=URL)", k)
			}
			ep.Id, ep.Url = k, v
		}
	}
	switch {
	case ep.Id == "":
		return nil, fmt.Errorf("no endpoint id")
	case ep.Url == "":
		return nil, fmt.Errorf("no URL")
	case ep.Region == "":
		return nil, fmt.Errorf("no region=")
	}
	return ep, nil
}

func (a *app) cellListCommand() *cobra.Command {
	var consistency consistencyFlag
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List cells and their endpoints",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.ListCellsResponse, error) {
				return c.ListCells(ctx, &pb.ListCellsRequest{Consistency: consistency.level()}, opt)
			}, func(w io.Writer, resp *pb.ListCellsResponse) { cellTable(w, resp.GetCells()...) })
		},
	}
	addConsistencyFlag(cmd, &consistency)
	return cmd
}

func (a *app) cellGetCommand() *cobra.Command {
	var consistency consistencyFlag
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show one cell",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.Cell, error) {
				resp, err := c.GetCell(ctx, &pb.GetCellRequest{Id: args[0], Consistency: consistency.level()}, opt)
				return resp.GetCell(), err
			}, func(w io.Writer, cell *pb.Cell) { cellTable(w, cell) })
		},
	}
	addConsistencyFlag(cmd, &consistency)
	return cmd
}

// cellTable has one row per endpoint; the weight shown is the effective one (0 counts as 1).
func cellTable(w io.Writer, cells ...*pb.Cell) {
	row(w, "CELL", "ENDPOINT", "REGION", "WEIGHT", "URL", "REVISION")
	for _, c := range cells {
		if len(c.GetEndpoints()) == 0 {
			row(w, c.GetId(), "-", "-", "-", "-", c.GetModRevision())
		}
		for _, ep := range c.GetEndpoints() {
			row(w, c.GetId(), ep.GetId(), ep.GetRegion(), max(ep.GetWeight(), 1), ep.GetUrl(), c.GetModRevision())
		}
	}
}

func (a *app) cellDeleteCommand() *cobra.Command {
	var expect uint64
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a cell (no placement or default cell may point at it)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(cmd, fmt.Sprintf("deleted cell %q", args[0]), func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				return c.DeleteCell(ctx, &pb.DeleteCellRequest{Id: args[0], ExpectRevision: expect})
			})
		},
	}
	addExpectFlag(cmd, &expect, "delete")
	return cmd
}
