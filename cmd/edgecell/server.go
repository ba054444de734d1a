package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgecell/edgecell/coordinator"
	"github.com/edgecell/edgecell/edgenode"
	"github.com/edgecell/edgecell/edgenode/proxy"
)

// service is a running coordinator or edge.
type service interface{ Close() error }

// runService starts a service with the logger of --log-level and --log-format,
// then blocks until the command's context ends (SIGINT or SIGTERM in main) and
// closes it.
func (a *app) runService(cmd *cobra.Command, start func(ctx context.Context, log *slog.Logger) (service, error)) error {
	log, err := a.newLogger(a.err)
	if err != nil {
		return err
	}
	// Services write raft logs, snapshots, key secrets and caches: nothing
	// they create is for other users (etcd's and Consul's data dirs are
	// 0700 too). Libraries that create files themselves (raft's snapshot
	// store) get the same.
	syscall.Umask(0o077)
	svc, err := start(cmd.Context(), log)
	if err != nil {
		return err
	}
	<-cmd.Context().Done()
	return svc.Close()
}

// identityFlags are the flags every service has: who it is, where, and where it keeps data.
func identityFlags(cmd *cobra.Command, name, region, dataDir *string, dataUse string) {
	f := cmd.Flags()
	f.StringVar(name, "name", "", "this node's name, unique among its kind")
	f.StringVar(region, "region", "", "this node's region")
	f.StringVar(dataDir, "data-dir", "", "directory for "+dataUse)
}

func (a *app) coordinatorCommand() *cobra.Command {
	var (
		cfg            coordinator.Config
		initialCluster string
	)
	cmd := &cobra.Command{
		Use:   "coordinator --name N --region R --data-dir D --grpc-addr G --raft-addr A [--initial-cluster n1=A1,n2=A2,n3=A3]",
		Short: "Run a coordinator: one member of the raft group that holds the routing state",
		Long: `Runs one coordinator until SIGINT or SIGTERM. Raft log, stable store and
snapshots live in --data-dir; a restarted coordinator keeps its data.

--initial-cluster (etcd style, name=raft address for every first member,
including this one) bootstraps a new cluster; give the same value to each of
them. It is ignored once --data-dir holds raft state, so a restart may repeat
it. Leave it out for a member that 'edgecell cluster join' will add to a
running cluster.

Both ports are mutual TLS: --cacert is the cluster CA, --cert and --key this
member's coordinator certificate (edgecell certs issue --role coordinator
--name N --host H). The gRPC API admits only certificates from that CA and
authorizes each call by the caller's role; the raft port admits only other
coordinators. --insecure serves both in plaintext to anyone.`,
		Example: `  edgecell coordinator --name n1 --region us-east --data-dir /var/lib/edgecell/n1 \
    --grpc-addr 10.0.0.1:7101 --raft-addr 10.0.0.1:7201 \
    --initial-cluster n1=10.0.0.1:7201,n2=10.0.0.2:7201,n3=10.0.0.3:7201 \
    --cacert /etc/edgecell/ca.pem --cert /etc/edgecell/n1.pem --key /etc/edgecell/n1-key.pem`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ic, err := coordinator.ParseInitialCluster(initialCluster)
			if err != nil {
				return usagef("--initial-cluster: %v", err)
			}
			if len(ic) > 0 {
				if _, ok := ic[cfg.Name]; !ok {
					return usagef("--initial-cluster does not name this member %q", cfg.Name)
				}
			}
			cfg.InitialCluster = ic
			return a.runService(cmd, func(ctx context.Context, log *slog.Logger) (service, error) {
				cfg.Logger = log
				var err error
				if cfg.TLS, err = a.serviceTLS(log); err != nil {
					return nil, err
				}
				return coordinator.Start(ctx, cfg)
			})
		},
	}
	identityFlags(cmd, &cfg.Name, &cfg.Region, &cfg.DataDir, "the raft log, stable store and snapshots")
	f := cmd.Flags()
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7101", "listen address of the gRPC API (admin, edges, peers)")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7201", "listen and advertised address of raft")
	f.StringVar(&initialCluster, "initial-cluster", "", "bootstrap a new cluster: name=raft-addr of every first member")
	f.Uint64Var(&cfg.Raft.SnapshotThreshold, "snapshot-threshold", 8192, "raft log entries that trigger a snapshot (and compaction of the log)")
	f.Uint64Var(&cfg.Raft.TrailingLogs, "trailing-logs", 8192, "raft log entries a compaction keeps, so a lagging member catches up without a snapshot")
	f.DurationVar(&cfg.Raft.SnapshotInterval, "snapshot-interval", 30*time.Second, "how often raft checks --snapshot-threshold")
	requireFlags(cmd, "name", "region", "data-dir")
	return cmd
}

func (a *app) edgeCommand() *cobra.Command {
	var https *edgeHTTPS // the client TLS flags (edgetls.go)
	var (
		cfg          edgenode.Config
		coordinators string
		underscores  string
		upgrades     string
		trusted      string
		debugHeader  string
	)
	cmd := &cobra.Command{
		Use:   "edge --name N --region R --data-dir D --listen ADDR --coordinators A,B,C",
		Short: "Run an edge: follow the routing state and reverse-proxy HTTP to cells",
		Long: `Runs an edge node until SIGINT or SIGTERM. It watches the routing state on
the coordinators (its own region's first), keeps the last good snapshot in
--data-dir so that it can start and serve without any coordinator, and proxies
requests by their X-Routing-Key header.

Coordinator connections are mutual TLS: --cacert is the cluster CA, --cert
and --key this edge's certificate (edgecell certs issue --role edge --name N
--region R), whose name and region must be --name and --region. Only servers
with coordinator certificates from that CA are followed. --insecure talks to
coordinators run with --insecure, in plaintext.`,
		Example: `  edgecell edge --name edge-use1 --region us-east --data-dir /var/lib/edgecell/edge \
    --listen :8080 --coordinators 10.0.0.1:7101,10.0.0.2:7101,10.0.0.3:7101 \
    --cacert /etc/edgecell/ca.pem --cert /etc/edgecell/edge-use1.pem --key /etc/edgecell/edge-use1-key.pem`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, c := range strings.Split(coordinators, ",") {
				if c = strings.TrimSpace(c); c != "" {
					cfg.Coordinators = append(cfg.Coordinators, c)
				}
			}
			if len(cfg.Coordinators) == 0 {
				return usagef("--coordinators: give at least one coordinator gRPC address")
			}
			for name, v := range map[string]int{"max-header-bytes": cfg.ProxyMaxHeaderBytes, "max-header-count": cfg.ProxyHead.MaxHeaderCount,
				"max-connection-tokens": cfg.ProxyHead.MaxConnectionTokens, "max-request-target": cfg.ProxyHead.MaxRequestTarget} {
				if v <= 0 {
					return usagef("--%s: want a positive number, not %d", name, v)
				}
			}
			var err error
			if cfg.ProxyHead.HeadersWithUnderscores, err = proxy.ParseUnderscoreAction(underscores); err != nil {
				return usagef("--headers-with-underscores: want reject, drop or allow, not %q", underscores)
			}
			for name, v := range map[string]time.Duration{"head-timeout": cfg.HeadTimeout, "idle-timeout": cfg.ClientIdleTimeout,
				"response-timeout": cfg.UpstreamResponseTimeout, "tunnel-idle-timeout": cfg.TunnelIdleTimeout} {
				if v <= 0 {
					return usagef("--%s: want a positive duration, not %s", name, v)
				}
			}
			if cfg.MaxConns < 0 || cfg.MaxHeldBodyBytes <= 0 {
				return usagef("--max-conns (%d) must be 0 (half the file descriptor limit) or more, --max-held-body-bytes (%d) positive", cfg.MaxConns, cfg.MaxHeldBodyBytes)
			}
			if cfg.TrustedProxies, err = parsePrefixes(trusted); err != nil {
				return usagef("--trusted-proxies: %v", err)
			}
			if cfg.DebugHeader, err = proxy.ParseDebugPolicy(debugHeader); err != nil {
				return usagef("--debug-header: %v", err)
			}
			for _, u := range strings.Split(upgrades, ",") {
				if u = strings.TrimSpace(u); u != "" {
					cfg.ProxyHead.AllowedUpgrades = append(cfg.ProxyHead.AllowedUpgrades, u)
				}
			}
			return a.runService(cmd, func(ctx context.Context, log *slog.Logger) (service, error) {
				cfg.Logger = log
				var err error
				if cfg.TLS, err = a.serviceTLS(log); err != nil {
					return nil, err
				}
				if err := https.apply(&cfg, log); err != nil {
					return nil, err
				}
				return edgenode.Start(ctx, cfg)
			})
		},
	}
	identityFlags(cmd, &cfg.Name, &cfg.Region, &cfg.DataDir, "the last good routing snapshot")
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8081", "HTTP listen address of the proxy")
	f.StringVar(&cfg.AdminListen, "admin-listen", "", "HTTP listen address for health and metrics (empty: none)")
	https = edgeTLSFlags(cmd, &cfg)
	f.StringVar(&coordinators, "coordinators", "", "comma-separated gRPC addresses of coordinators")
	f.StringVar(&cfg.ClusterID, "cluster-id", "", "follow only this cluster (the id `edgecell cluster status` shows); unset, follow whichever cluster the coordinators serve")
	f.IntVar(&cfg.ProxyMaxHeaderBytes, "max-header-bytes", 64<<10, "largest request (or response) head in bytes; a request over it gets 431")
	f.IntVar(&cfg.ProxyHead.MaxHeaderCount, "max-header-count", 100, "most header fields in a request; over it: 431")
	f.IntVar(&cfg.ProxyHead.MaxConnectionTokens, "max-connection-tokens", 16, "most tokens in a request's (or response's) Connection fields; over it: 400 (502)")
	f.IntVar(&cfg.ProxyHead.MaxRequestTarget, "max-request-target", 8<<10, "longest request target in bytes; over it: 414")
	f.StringVar(&underscores, "headers-with-underscores", "reject", "request header names with \"_\": reject (400), drop, or allow")
	f.StringVar(&upgrades, "allow-upgrades", "", "comma-separated Upgrade protocols forwarded besides websocket (others go as plain requests)")
	f.DurationVar(&cfg.HeadTimeout, "head-timeout", 10*time.Second, "a request head must be whole within this of its first byte (a new connection's, of the accept); past it: 408 and close")
	f.DurationVar(&cfg.ClientIdleTimeout, "idle-timeout", 75*time.Second, "close a keep-alive client connection that starts no next request within this")
	f.DurationVar(&cfg.UpstreamResponseTimeout, "response-timeout", 60*time.Second, "an upstream must start its response within this of the whole request (streamed body included) being sent; past it: 504")
	f.DurationVar(&cfg.TunnelIdleTimeout, "tunnel-idle-timeout", 5*time.Minute, "close a websocket tunnel that carries no byte either way for this long")
	f.IntVar(&cfg.MaxConns, "max-conns", 0, "most concurrent client connections; at the cap the edge stops accepting and /readyz says overloaded (0: half the file descriptor limit)")
	f.Int64Var(&cfg.MaxHeldBodyBytes, "max-held-body-bytes", 256<<20, "memory for signed request bodies held to check their hash; a request past it gets 503 with Retry-After")
	f.StringVar(&trusted, "trusted-proxies", "", "comma-separated CIDRs or addresses of proxies in front of the edge whose X-Forwarded-*/Forwarded headers are kept (from any other peer they are replaced)")
	f.StringVar(&debugHeader, "debug-header", "off", "who gets X-Edge-Route for X-Edge-Debug: 1: off, trusted (peers in --trusted-proxies) or on")
	requireFlags(cmd, "name", "region", "data-dir", "coordinators")
	return cmd
}

// parsePrefixes reads a comma-separated list of CIDRs and bare addresses
// (a bare address is its own /32 or /128).
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", v)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func requireFlags(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(fmt.Sprintf("flag %q: %v", n, err)) // a programming error: the flag is not defined
		}
	}
}
