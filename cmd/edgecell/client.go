package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgecell/edgecell/coordinator/server"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// admin returns the AdminService client for --addr, dialling on first use. Reads
// pass readRetry() so that one UNAVAILABLE (a leader election, a coordinator
// restarting) is retried once; writes are never retried here, since a write that
// timed out may have committed.
func (a *app) admin() (pb.AdminServiceClient, error) {
	if a.conn == nil {
		creds, err := a.clientCreds()
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(a.addr,
			grpc.WithTransportCredentials(creds),
			// A whole config (get config) is as large as a coordinator
			// accepts one (apply -f).
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(server.MaxMessageSize)),
			grpc.WithChainUnaryInterceptor(retry.UnaryClientInterceptor(
				retry.WithCodes(codes.Unavailable),
				retry.WithBackoff(retry.BackoffLinearWithJitter(500*time.Millisecond, 0.2)),
			)),
		)
		if err != nil {
			return nil, usagef("--addr %q: %v", a.addr, err)
		}
		a.conn = conn
	}
	return pb.NewAdminServiceClient(a.conn), nil
}

// clientCreds are the admin connection's credentials: mutual TLS with the
// --cacert, --cert and --key files, accepting only coordinators, or
// plaintext with --insecure.
func (a *app) clientCreds() (credentials.TransportCredentials, error) {
	if a.insecure {
		return insecure.NewCredentials(), nil
	}
	if err := a.tls.Check(); err != nil {
		return nil, usagef("%v", err)
	}
	src, err := pki.NewSource(a.tls, nil)
	if err != nil {
		return nil, err
	}
	return src.ClientCredentials(pki.RoleCoordinator), nil
}

// serviceTLS is a service's TLS material, or nil with --insecure.
func (a *app) serviceTLS(log *slog.Logger) (*pki.Source, error) {
	if a.insecure {
		return nil, nil
	}
	if err := a.tls.Check(); err != nil {
		return nil, usagef("%v", err)
	}
	return pki.NewSource(a.tls, log)
}

// readRetry makes a read try twice when the first attempt answers UNAVAILABLE.
func readRetry() grpc.CallOption { return retry.WithMax(2) }

// consistencyFlag is the --consistency flag of the read commands.
type consistencyFlag struct{ value string }

func (f *consistencyFlag) String() string { return f.value }
func (f *consistencyFlag) Type() string   { return "stale|leader|linearizable" }
func (f *consistencyFlag) Set(s string) error {
	if _, err := parseConsistency(s); err != nil {
		return err
	}
	f.value = s
	return nil
}

func (f *consistencyFlag) level() pb.Consistency {
	c, _ := parseConsistency(f.value)
	return c
}

func parseConsistency(s string) (pb.Consistency, error) {
	switch strings.ToLower(s) {
	case "", "linearizable":
		return pb.Consistency_CONSISTENCY_LINEARIZABLE, nil
	case "leader":
		return pb.Consistency_CONSISTENCY_LEADER, nil
	case "stale":
		return pb.Consistency_CONSISTENCY_STALE, nil
	}
	return 0, fmt.Errorf("want stale, leader or linearizable, got %q", s)
}

func addConsistencyFlag(cmd *cobra.Command, f *consistencyFlag) {
	f.value = "linearizable"
	cmd.Flags().Var(f, "consistency", "read consistency: stale (any member's state), leader, or linearizable")
}

// addExpectFlag adds --expect-revision, the compare-and-set of every write.
func addExpectFlag(cmd *cobra.Command, expect *uint64, verb string) {
	cmd.Flags().Uint64Var(expect, "expect-revision", 0, verb+" only if the current revision is this one (0: unconditionally)")
}
