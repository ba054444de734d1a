package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

const (
	defaultAddr = "127.0.0.1:7101"
	addrEnv     = "EDGECELL_ADDR"
	// The TLS files every admin verb and service reads, etcdctl style.
	caCertEnv = "EDGECELL_CACERT"
	certEnv   = "EDGECELL_CERT"
	keyEnv    = "EDGECELL_KEY"
)

// streams are the process's standard streams, injected so tests can run commands in-process.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// app is one invocation of the binary: its flags, streams and the lazily dialled
// connection to a coordinator.
type app struct {
	streams
	now func() time.Time

	addr      string
	output    string
	timeout   time.Duration
	logLevel  string
	logFormat string
	tls       pki.Files
	insecure  bool

	// validated is set once cobra has accepted the command line (flags,
	// arguments, required flags): an error before that is a usage error.
	validated bool

	conn *grpc.ClientConn
}

// run executes one command line and returns the process exit status.
func run(ctx context.Context, args []string, s streams, getenv func(string) string) int {
	a := &app{streams: s, now: time.Now}
	root := a.rootCommand(getenv)
	root.SetArgs(args)
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	cmd, err := root.ExecuteContextC(ctx)
	if a.conn != nil {
		a.conn.Close()
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(s.err, "edgecell: %s\n", a.describeError(err))
	if !a.validated {
		fmt.Fprintf(s.err, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	return exitCode(err)
}

func (a *app) rootCommand(getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:   "edgecell",
		Short: "Edge routing for cell-based systems",
		Long: `edgecell routes HTTP requests to cells: raft-replicated coordinators hold the
routing state, and edge nodes in every region follow it and reverse-proxy to
the right cell, preferring their own region.

Admin commands talk gRPC to any coordinator (--addr, or $EDGECELL_ADDR),
over mutual TLS: --cacert, --cert and --key (or $EDGECELL_CACERT,
$EDGECELL_CERT, $EDGECELL_KEY) name the cluster CA and an admin or viewer
certificate ('edgecell certs' makes them; 'edgecell dev' prints the exports).
Services take the same flags. --insecure talks plaintext instead, to a
cluster run with --insecure.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.output {
			case "table", "json", "yaml":
			default:
				return usagef("-o %q: want table, json or yaml", a.output)
			}
			if a.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			if a.insecure {
				f := cmd.Flags()
				if f.Changed("cacert") || f.Changed("cert") || f.Changed("key") {
					return usagef("--insecure with --cacert, --cert or --key: choose TLS or plaintext")
				}
				a.tls = pki.Files{} // $EDGECELL_CACERT and friends give defaults, which --insecure overrides
			}
			return nil
		},
	}

	addr := defaultAddr
	if env := getenv(addrEnv); env != "" {
		addr = env
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", addr, "gRPC address of any coordinator; $"+addrEnv+" sets the default")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "how long a command may take")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level of the services: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format of the services: text or json")
	pf.StringVar(&a.tls.CA, "cacert", getenv(caCertEnv), "cluster CA certificate (PEM) to trust; $"+caCertEnv+" sets the default")
	pf.StringVar(&a.tls.Cert, "cert", getenv(certEnv), "this client's or service's certificate (PEM); $"+certEnv+" sets the default")
	pf.StringVar(&a.tls.Key, "key", getenv(keyEnv), "the certificate's private key (PEM); $"+keyEnv+" sets the default")
	pf.BoolVar(&a.insecure, "insecure", false, "plaintext gRPC and raft, no certificates: anyone who reaches a port is trusted (development only)")

	root.AddGroup(
		&cobra.Group{ID: "admin", Title: "Admin commands (gRPC to a coordinator):"},
		&cobra.Group{ID: "server", Title: "Services:"},
	)
	for _, c := range []*cobra.Command{
		a.applyCommand(), a.getCommand(), a.cellCommand(), a.placementCommand(),
		a.edgesCommand(), a.clusterCommand(), a.healthCommand(), a.breakersCommand(), a.breakerCommand(), a.keyCommand(),
	} {
		c.GroupID = "admin"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.coordinatorCommand(), a.edgeCommand(), a.devCommand(), a.demoBackendCommand(), a.loadtestCommand()} {
		c.GroupID = "server"
		root.AddCommand(c)
	}
	root.AddCommand(a.versionCommand(), a.requestCommand(getenv), a.certsCommand())
	a.markValidated(root)
	return root
}

// markValidated makes every command's RunE record that cobra accepted the
// command line; cobra checks required flags only after the pre-run hooks.
func (a *app) markValidated(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			a.validated = true
			return run(cmd, args)
		}
	}
	for _, c := range cmd.Commands() {
		a.markValidated(c)
	}
}

// exactArgs is cobra.ExactArgs naming the arguments, returning a usage error.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %d argument(s): %v; got %d", cmd.CommandPath(), len(names), names, len(args))
		}
		return nil
	}
}

// groupCommand is a command that only holds subcommands: alone it prints its
// help; with an unknown subcommand it is a usage error.
func groupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments; got %q", cmd.CommandPath(), args)
	}
	return nil
}

// call runs f with the AdminService client of --addr, bounded by --timeout.
func (a *app) call(cmd *cobra.Command, f func(ctx context.Context, c pb.AdminServiceClient) error) error {
	client, err := a.admin()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	defer cancel()
	return f(ctx, client)
}

// read runs one read RPC, retried once on UNAVAILABLE (opt), and prints its result.
func read[T proto.Message](a *app, cmd *cobra.Command, rpc func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (T, error), table func(io.Writer, T)) error {
	return a.call(cmd, func(ctx context.Context, c pb.AdminServiceClient) error {
		resp, err := rpc(ctx, c, readRetry())
		if err != nil {
			return err
		}
		return a.show(resp, func(w io.Writer) { table(w, resp) })
	})
}

// revisioned is the response of every write.
type revisioned interface {
	proto.Message
	GetRevision() uint64
}

// write runs one write RPC and prints "<done> at revision N" (or the response, for -o json|yaml).
func (a *app) write(cmd *cobra.Command, done string, f func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error)) error {
	return a.call(cmd, func(ctx context.Context, c pb.AdminServiceClient) error {
		resp, err := f(ctx, c)
		if err != nil {
			return err
		}
		return a.showWrite(resp, done, resp.GetRevision())
	})
}
