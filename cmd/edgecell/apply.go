package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/configfile"
)

func (a *app) applyCommand() *cobra.Command {
	var (
		file   string
		expect uint64
		wait   bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Replace the whole routing config, atomically",
		Long: `Apply replaces the whole routing config with the file's: regions, latencies,
cells, placements and the default cell. Either all of it applies or none does;
a config the coordinators reject (an endpoint in an unknown region, a placement
to a missing cell, ...) leaves the state as it was. The file format is what
'edgecell get config -o yaml' prints (see deploy/routing.example.yaml).`,
		Example: `  edgecell apply -f deploy/routing.example.yaml
  edgecell get config -o yaml > cfg.yaml && $EDITOR cfg.yaml && edgecell apply -f cfg.yaml --expect-revision 42`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := &pb.RoutingConfig{}
			if err := a.readFile(file, cfg); err != nil {
				return err
			}
			done := "applied config"
			if wait {
				done = "applied config; every connected edge serves it"
			}
			return a.write(cmd, done, func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				resp, err := c.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: cfg, ExpectRevision: expect})
				if err == nil && wait {
					err = a.waitForEdges(ctx, c, resp.GetRevision())
				}
				return resp, err
			})
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "routing config file (YAML or JSON); - reads standard input")
	addExpectFlag(cmd, &expect, "apply")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait (up to --timeout) until every connected edge has applied the new revision")
	cmd.MarkFlagRequired("filename")
	return cmd
}

// readFile decodes a YAML or JSON file ("-": standard input) into m. A missing or
// malformed file is a usage error.
func (a *app) readFile(name string, m proto.Message) error {
	var r io.Reader = a.in
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return usageError{err}
		}
		defer f.Close()
		r = f
	}
	if err := configfile.Decode(r, m); err != nil {
		if name == "-" {
			name = "standard input"
		}
		if errors.Is(err, configfile.ErrInvalid) {
			return usagef("%s: %v", name, err)
		}
		return usageError{err}
	}
	return nil
}

func (a *app) getCommand() *cobra.Command {
	get := groupCommand("get", "Print the routing config")
	var consistency consistencyFlag
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Print the whole routing config as a file 'apply -f' accepts",
		Long: `Prints the routing config in the file format of 'edgecell apply -f' (YAML for
-o table and -o yaml, JSON for -o json), without the revision stamps of cells
and placements, so that 'edgecell get config -o yaml | edgecell apply -f -'
changes nothing. The revision it was read at is printed as a comment (YAML).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c pb.AdminServiceClient) error {
				resp, err := c.GetConfig(ctx, &pb.GetConfigRequest{Consistency: consistency.level()}, readRetry())
				if err != nil {
					return err
				}
				return a.showConfig(resp)
			})
		},
	}
	addConsistencyFlag(cfg, &consistency)
	get.AddCommand(cfg)
	return get
}

// showConfig prints the config in the file format: YAML with its revision as a
// comment, or JSON for -o json.
func (a *app) showConfig(resp *pb.GetConfigResponse) error {
	if a.output == "json" {
		b, err := configfile.MarshalJSON(resp.GetConfig())
		if err != nil {
			return err
		}
		_, err = a.out.Write(b)
		return err
	}
	b, err := configfile.Marshal(resp.GetConfig())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.out, "# edgecell routing config at revision %d\n%s", resp.GetRevision(), b)
	return err
}
