package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/edgecell/edgecell/internal/harness/devcluster"
)

func (a *app) devCommand() *cobra.Command {
	opts := devcluster.Options{Ports: devcluster.DefaultPorts()}
	cmd := &cobra.Command{
		Use:   "dev [--data-dir D]",
		Short: "Run a local three-region cluster in this process",
		Long: `Dev starts, on loopback: three coordinators (n1 us-east, n2 eu-west, n3
ap-south; gRPC 7101-7103, raft 7201-7203), one edge per region (HTTP
8081-8083) and two demo backends per region (9001-9006) that answer with their
endpoint id and region. It applies a sample routing config and prints commands
to try. Ctrl-C stops it.

Data lives in a temporary directory unless --data-dir is given; a cluster
started again on the same --data-dir keeps its routing config.

Every node runs with mutual TLS, as a deployment does: dev creates a CA and a
certificate per node, plus an admin's and a viewer's, in <data dir>/tls, and
prints the export lines that point the CLI at the admin's. --insecure runs
everything in plaintext instead.

Regions are simulated: every connection between two regions (edge to
coordinator, coordinator to coordinator, edge to backend) is delayed by the
routing config's latency matrix, times --latency-scale, and follows the config
as it changes. --simulate-latency=false runs everything at loopback speed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				a.logLevel = "error" // raft warns of every election; the printed summary is the point here
			}
			log, err := a.newLogger(a.err)
			if err != nil {
				return err
			}
			opts.Logger = log
			opts.Insecure = a.insecure
			if opts.SimulateLatency && !(opts.LatencyScale > 0) {
				return fmt.Errorf("--latency-scale %v: want a number above 0 (--simulate-latency=false turns the delays off)", opts.LatencyScale)
			}
			fmt.Fprintln(a.out, "starting the dev cluster...")
			c, err := devcluster.Start(cmd.Context(), opts)
			if err != nil {
				return err
			}
			a.printDevSummary(a.out, c)
			<-cmd.Context().Done()
			fmt.Fprintln(a.out, "\nstopping the dev cluster...")
			return c.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", "", "keep data here and reuse it on the next run (default: a temporary directory)")
	f.IntVar(&opts.Ports.CoordinatorGRPC, "grpc-base-port", opts.Ports.CoordinatorGRPC, "first of three coordinator gRPC ports (0: any free ports)")
	f.IntVar(&opts.Ports.CoordinatorRaft, "raft-base-port", opts.Ports.CoordinatorRaft, "first of three coordinator raft ports (0: any free ports)")
	f.IntVar(&opts.Ports.EdgeHTTP, "http-base-port", opts.Ports.EdgeHTTP, "first of three edge HTTP ports (0: any free ports)")
	f.IntVar(&opts.Ports.Backend, "backend-base-port", opts.Ports.Backend, "first of six demo backend ports (0: any free ports)")
	f.BoolVar(&opts.SimulateLatency, "simulate-latency", true, "delay connections between regions by the routing config's latency matrix")
	f.Float64Var(&opts.LatencyScale, "latency-scale", 1, "multiply every simulated delay by this (0.1: a tenth of the matrix)")
	return cmd
}

func (a *app) printDevSummary(w io.Writer, c *devcluster.Cluster) {
	regions := devcluster.Regions()
	fmt.Fprintf(w, "\nedgecell dev cluster is up: routing config at revision %d, data in %s\n\n", c.Revision(), c.DataDir())
	fmt.Fprintln(w, "coordinators:")
	for _, m := range c.Members() {
		fmt.Fprintf(w, "  %s  %-9s gRPC %s  raft %s\n", m.Name, m.Region, m.GRPCAddr, m.RaftAddr)
	}
	fmt.Fprintln(w, "edges:")
	for _, r := range regions {
		fmt.Fprintf(w, "  %-9s %s\n", r, c.EdgeURL(r))
	}
	if net := c.Network(); net != nil {
		fmt.Fprintf(w, "simulated latency: the config's matrix times %g between regions (--simulate-latency=false turns it off)\n", net.Matrix().Scale())
	}
	fmt.Fprintln(w, "demo backends:")
	for _, b := range c.Backends() {
		fmt.Fprintf(w, "  %-10s %-9s %s\n", b.ID, b.Region, b.URL)
	}

	first, last := c.EdgeURL(regions[0]), c.EdgeURL(regions[len(regions)-1])
	fmt.Fprintln(w, "\ntry:")
	for _, r := range regions {
		fmt.Fprintf(w, "  curl -s -H 'X-Routing-Key: tenant-1' %s/hello        # cell-1, served in %s\n", c.EdgeURL(r), r)
	}
	fmt.Fprintf(w, "  curl -si -H 'X-Routing-Key: tenant-2' %s/hello       # cell-2 has no %s endpoint: nearest region serves (see X-Edge-Endpoint)\n", last, regions[len(regions)-1])
	fmt.Fprintf(w, "  curl -si -H 'X-Routing-Key: someone-new' %s/       # no placement: the default cell\n", first)
	fmt.Fprintf(w, "  curl -si %s/                                      # no routing key: 400\n", first)

	addr := ""
	if grpc := c.Members()[0].GRPCAddr; grpc != defaultAddr {
		addr = " --addr " + grpc
	}
	fmt.Fprintln(w, "\nand the CLI, in another terminal:")
	if admin, ok := c.TLSFiles("admin"); ok {
		fmt.Fprintf(w, "  export %s=%s\n", caCertEnv, admin.CA)
		fmt.Fprintf(w, "  export %s=%s\n", certEnv, admin.Cert)
		fmt.Fprintf(w, "  export %s=%s\n", keyEnv, admin.Key)
	} else {
		addr += " --insecure"
	}
	for _, line := range []string{
		"cluster status", "edges", "get config -o yaml", "cell list",
		"placement put tenant-9 cell-2", "placement list",
	} {
		fmt.Fprintf(w, "  edgecell%s %s\n", addr, line)
	}
	if c.Temporary() {
		fmt.Fprintln(w, "\nCtrl-C stops the cluster and deletes its data.")
	} else {
		fmt.Fprintf(w, "\nCtrl-C stops the cluster; 'edgecell dev --data-dir %s' starts it again.\n", c.DataDir())
	}
}
