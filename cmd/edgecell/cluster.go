package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func (a *app) clusterCommand() *cobra.Command {
	cmd := groupCommand("cluster", "Inspect and change the coordinator cluster")
	cmd.AddCommand(a.clusterStatusCommand(), a.clusterJoinCommand(), a.clusterRemoveCommand(), a.clusterTransferCommand())
	return cmd
}

func (a *app) clusterStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show members, the leader, the term and applied revisions",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.ClusterStatusResponse, error) {
				return c.ClusterStatus(ctx, &pb.ClusterStatusRequest{}, opt)
			}, statusTable)
		},
	}
}

func statusTable(w io.Writer, resp *pb.ClusterStatusResponse) {
	fmt.Fprintf(w, "cluster: %s  leader: %s  term: %d  revision: %d\n\n", orDash(resp.GetClusterId()), orDash(resp.GetLeader()), resp.GetTerm(), resp.GetRevision())
	row(w, "MEMBER", "REGION", "ROLE", "VOTER", "TERM", "APPLIED", "COMMIT", "REVISION", "GRPC", "RAFT")
	for _, m := range resp.GetMembers() {
		row(w, m.GetName(), orDash(m.GetRegion()), m.GetRole(), m.GetVoter(), m.GetTerm(),
			m.GetAppliedIndex(), m.GetCommitIndex(), m.GetRevision(), orDash(m.GetGrpcAddr()), orDash(m.GetRaftAddr()))
	}
	for _, m := range resp.GetMembers() {
		if h := m.GetHalted(); h != "" {
			fmt.Fprintf(w, "\n%s is halted: %s\n", m.GetName(), h)
		}
	}
}

func (a *app) clusterJoinCommand() *cobra.Command {
	m := &pb.Member{}
	cmd := &cobra.Command{
		Use:   "join --name N --region R --raft-addr A --grpc-addr G",
		Short: "Add a coordinator to the cluster as a voter",
		Long: `Join adds a coordinator to the raft configuration. Start the new coordinator
first, without --initial-cluster, then run join against any existing member.`,
		Example: `  edgecell coordinator --name n4 --region us-east --data-dir /var/lib/edgecell \
    --grpc-addr 10.0.0.4:7101 --raft-addr 10.0.0.4:7201 &
  edgecell cluster join --name n4 --region us-east --raft-addr 10.0.0.4:7201 --grpc-addr 10.0.0.4:7101`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.write(cmd, fmt.Sprintf("added member %q", m.GetName()), func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				return c.AddMember(ctx, &pb.AddMemberRequest{Member: m})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&m.Name, "name", "", "the new member's name")
	f.StringVar(&m.Region, "region", "", "the new member's region")
	f.StringVar(&m.RaftAddr, "raft-addr", "", "the new member's raft address (host:port)")
	f.StringVar(&m.GrpcAddr, "grpc-addr", "", "the new member's gRPC address (host:port)")
	for _, name := range []string{"name", "region", "raft-addr", "grpc-addr"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func (a *app) clusterRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a coordinator from the raft configuration",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(cmd, fmt.Sprintf("removed member %q", args[0]), func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				return c.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: args[0]})
			})
		},
	}
}

func (a *app) clusterTransferCommand() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "transfer-leadership [--to NAME]",
		Short: "Move raft leadership to another member",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c pb.AdminServiceClient) error {
				resp, err := c.TransferLeadership(ctx, &pb.TransferLeadershipRequest{To: to})
				if err != nil {
					return err
				}
				return a.show(resp, func(w io.Writer) {
					fmt.Fprintf(w, "leader is now %s (term %d)\n", resp.GetLeader(), resp.GetTerm())
				})
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the member to hand leadership to (default: the most up-to-date other voter)")
	return cmd
}
