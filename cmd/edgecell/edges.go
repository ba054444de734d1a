package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func (a *app) edgesCommand() *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "edges",
		Short: "List edges with their region, coordinator, applied revision and lag",
		Long: `Lists every edge the coordinators know: the coordinator its watch stream is
connected to, the highest revision it acknowledged as applied, how many
revisions it lags the cluster, and the last revision it rejected and why.
Edges that disconnected recently are listed as not connected.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.ListEdgesResponse, error) {
				resp, err := c.ListEdges(ctx, &pb.ListEdgesRequest{LocalOnly: local}, opt)
				for _, m := range resp.GetUnreachableMembers() {
					fmt.Fprintf(a.err, "edgecell: warning: coordinator %s did not answer; its edges are missing\n", m)
				}
				return resp, err
			}, a.edgeTable)
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "only the edges connected to the --addr coordinator")
	return cmd
}

func (a *app) edgeTable(w io.Writer, resp *pb.ListEdgesResponse) {
	now := a.now()
	row(w, "EDGE", "REGION", "CONNECTED", "COORDINATOR", "APPLIED", "LAG", "LAST ACK", "REJECTED")
	for _, e := range resp.GetEdges() {
		rejected := "-"
		if e.GetRejectedRevision() != 0 {
			rejected = strconv.FormatUint(e.GetRejectedRevision(), 10) + ": " + e.GetRejectReason()
		}
		row(w, e.GetName(), e.GetRegion(), e.GetConnected(), orDash(e.GetCoordinator()),
			e.GetAppliedRevision(), e.GetLag(), ago(now, e.GetLastAckUnixMs()), rejected)
	}
}

// waitForEdges polls ListEdges until every connected edge has applied revision
// rev, or ctx ends. It is the receipt of a write: the moment every edge routes by it.
func (a *app) waitForEdges(ctx context.Context, client pb.AdminServiceClient, rev uint64) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.ListEdges(ctx, &pb.ListEdgesRequest{}, readRetry())
		if err == nil {
			behind := 0
			for _, e := range resp.GetEdges() {
				if e.GetConnected() && e.GetAppliedRevision() < rev {
					behind++
				}
			}
			if behind == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return fmt.Errorf("revision %d committed, but not every edge applied it within --timeout %s (see 'edgecell edges')", rev, a.timeout)
		case <-tick.C:
		}
	}
}
