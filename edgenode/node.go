package edgenode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgecell/edgecell/edgenode/cache"
	"github.com/edgecell/edgecell/edgenode/coordconn"
	"github.com/edgecell/edgecell/edgenode/jwtauth"
	"github.com/edgecell/edgecell/edgenode/nonce"
	"github.com/edgecell/edgecell/edgenode/proxy"
	"github.com/edgecell/edgecell/edgenode/report"
	"github.com/edgecell/edgecell/edgenode/route"
	"github.com/edgecell/edgecell/edgenode/tlsterm"
	"github.com/edgecell/edgecell/edgenode/watch"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/clusterid"
	"github.com/edgecell/edgecell/internal/pki"
)

// Config configures an edge. Name, Region, DataDir and Listen are required;
// zero tuning fields take the defaults documented on them.
type Config struct {
	// Name identifies the edge to the coordinators; Region is where it runs
	// (its own region's endpoints and coordinators are preferred).
	Name, Region string
	// DataDir holds the routing cache, DataDir/edge.db.
	DataDir string
	// Listen is the proxy's HTTP address, e.g. 127.0.0.1:8081 or 127.0.0.1:0.
	Listen string
	// HTTPS, if set, are the certificates the proxy terminates client TLS
	// with: on TLSListen, or, without TLSListen, on Listen (which then
	// serves HTTPS only).
	HTTPS *tlsterm.Certificates
	// TLSListen is the proxy's HTTPS address, next to Listen's HTTP; it
	// needs HTTPS.
	TLSListen string
	// AdminListen, if set, serves /healthz, /readyz and /metrics.
	AdminListen string
	// Coordinators are gRPC addresses to follow the state from (a seed: the
	// members the state lists are added).
	Coordinators []string
	// ClusterID, if set, pins the edge to that cluster (watch.Config.ClusterID).
	ClusterID string
	// TLS is the edge's certificate (role edge, this Name and Region) and
	// the cluster CA: every coordinator connection is mutual TLS and
	// accepts only coordinator certificates. Nil is plaintext (--insecure),
	// which Start logs as a warning.
	TLS *pki.Source
	// Logger; nil discards.
	Logger *slog.Logger
	// DialContext opens upstream and coordinator connections; nil uses a
	// net.Dialer. Used to simulate inter-region latency.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// UpstreamTLS is the base TLS config for https endpoints; nil uses system roots.
	UpstreamTLS *tls.Config
	// UpstreamDialTimeout bounds a connection attempt before the next
	// endpoint is tried. Default 2s.
	UpstreamDialTimeout time.Duration
	// UpstreamResponseTimeout bounds the wait for an upstream's response
	// head; past it the client gets 504. Default 60s.
	UpstreamResponseTimeout time.Duration
	// UpstreamMaxIdlePerHost caps pooled idle connections per upstream. Default 1024.
	UpstreamMaxIdlePerHost int
	// UpstreamIdleTimeout closes pooled connections idle that long. Default 60s.
	UpstreamIdleTimeout time.Duration
	// ClientIdleTimeout closes keep-alive client connections that start no
	// next request for that long. Default 75s.
	ClientIdleTimeout time.Duration
	// HeadTimeout bounds the reading of a request head (408 past it).
	// Default 10s.
	HeadTimeout time.Duration
	// TunnelIdleTimeout closes websocket tunnels idle both ways that
	// long. Default 5m.
	TunnelIdleTimeout time.Duration
	// MaxConns caps concurrent client connections; at the cap the edge
	// stops accepting and /readyz says it is overloaded. Default half the
	// file descriptor limit.
	MaxConns int
	// MaxHeldBodyBytes is the memory budget for signed request bodies held
	// to check their hash (503 with Retry-After past it). Default 256 MiB.
	MaxHeldBodyBytes int64
	// TrustedProxies are the peers whose forwarding headers are kept
	// (proxy.Config.TrustedProxies).
	TrustedProxies []netip.Prefix
	// DebugHeader says who gets X-Edge-Route for X-Edge-Debug: 1. Default off.
	DebugHeader proxy.DebugPolicy
	// ProxyReadMode chooses how the proxy reads connections. The default,
	// proxy.ReadFirst, never stalls; proxy.WaitFirst saves a system call
	// twice per request but can stall a request up to 10 ms in rare cases.
	ProxyReadMode proxy.ReadMode
	// ProxyMaxHeaderBytes bounds a request or response head (431 over it
	// for a request). Default 64 KiB.
	ProxyMaxHeaderBytes int
	// ProxyHead bounds the fields, Connection tokens and target of client
	// request heads and says which header names and upgrades pass
	// (proxy.HeadLimits; zero fields take its defaults).
	ProxyHead proxy.HeadLimits
	// ShutdownTimeout bounds how long Close lets requests in flight finish. Default 10s.
	ShutdownTimeout time.Duration
	// WatchBackoffBase and WatchBackoffMax bound the reconnect backoff. Defaults 100ms and 3s.
	WatchBackoffBase, WatchBackoffMax time.Duration
	// ReportInterval is how often proxy outcomes and health check results
	// are reported to the coordinators and half-open endpoints are
	// considered for a probe. Default 1s.
	ReportInterval time.Duration
	// AuthTimeout bounds how long a request to a cell with an auth policy
	// may wait for what its check needs from elsewhere: the coordinators'
	// answer to a signed request's nonce check (retries on other
	// coordinators included), or the first fetch of an issuer's key set for
	// a bearer token. Past it the request gets 503: the edge fails closed.
	// Default 2s.
	AuthTimeout time.Duration
	// NonceCacheSize bounds the nonces this edge remembers as used, to
	// refuse a replay without asking the coordinators. Default 16384;
	// negative: none.
	NonceCacheSize int
}

// Node is a running edge. Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	table   atomic.Pointer[route.Table]
	store   *cache.Store
	persist *cache.Persister
	proxy   *proxy.Server
	ln      net.Listener
	tlsLn   net.Listener // the HTTPS listener: ln itself, another, or nil
	admin   *http.Server
	adminLn net.Listener
	watch   *watch.Client
	pool    *coordconn.Pool // every coordinator connection: watch, reports, nonce checks
	checker *report.Checker
	nonces  *nonce.Client
	tokens  *jwtauth.Verifiers

	cancelWatch context.CancelFunc
	reportDone  chan struct{}
	watchDone   chan struct{}
	closeOnce   sync.Once
	closeErr    error
}

// Start opens the routing cache and serves its last good table at once,
// binds the listeners and starts following the coordinators. It returns once
// the edge serves; ctx bounds only the startup. With no cached table the
// edge answers 503 until a coordinator delivers one. The caller must Close
// the node.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("edge", cfg.Name, "region", cfg.Region),
		watchDone: make(chan struct{}), reportDone: make(chan struct{})}
	if cfg.TLS == nil {
		n.log.Warn("following the coordinators WITHOUT TLS (--insecure): key secrets cross the network in clear and any host on the path can serve a forged routing state")
	}
	var err error
	if n.store, err = cache.Open(filepath.Join(cfg.DataDir, "edge.db"), n.log); err != nil {
		return nil, err
	}
	n.table.Store(n.loadCache())
	n.persist = cache.NewPersister(n.store, n.log, 0)

	// One pool, one rule for every call to the coordinators (coordconn):
	// the watch picks the member it follows from it, and the reports and
	// nonce checks learn from what the watch and each other saw.
	n.pool = coordconn.New(coordconn.Config{
		Edge: cfg.Name, Region: cfg.Region, Seeds: cfg.Coordinators,
		Members:     func() []*pb.Member { return n.table.Load().Members() },
		DialContext: cfg.DialContext, Creds: n.coordinatorCreds(),
	})
	n.watch, err = watch.New(watch.Config{
		Edge: cfg.Name, Region: cfg.Region, Pool: n.pool, ClusterID: cfg.ClusterID,
		Table: &n.table, Persister: n.persist, Logger: n.log,
		BackoffBase: cfg.WatchBackoffBase, BackoffMax: cfg.WatchBackoffMax,
		OnSwap: n.tableSwapped,
	})
	if err != nil {
		n.abort()
		return nil, err
	}
	n.nonces, err = nonce.New(nonce.Config{
		Edge: cfg.Name, Coordinators: n.pool, Timeout: cfg.AuthTimeout, CacheSize: cfg.NonceCacheSize, Logger: n.log,
	})
	if err != nil {
		n.abort()
		return nil, err
	}
	n.tokens = jwtauth.New(jwtauth.Config{Logger: n.log})

	metrics := proxy.NewMetrics()
	n.proxy = proxy.New(proxy.Config{
		Region:              cfg.Region,
		Table:               &n.table,
		DialContext:         cfg.DialContext,
		TLSConfig:           cfg.UpstreamTLS,
		DialTimeout:         cfg.UpstreamDialTimeout,
		ResponseTimeout:     cfg.UpstreamResponseTimeout,
		MaxIdlePerHost:      cfg.UpstreamMaxIdlePerHost,
		UpstreamIdleTimeout: cfg.UpstreamIdleTimeout,
		ClientIdleTimeout:   cfg.ClientIdleTimeout,
		HeadTimeout:         cfg.HeadTimeout,
		TunnelIdleTimeout:   cfg.TunnelIdleTimeout,
		MaxConns:            cfg.MaxConns,
		MaxHeldBodyBytes:    cfg.MaxHeldBodyBytes,
		TrustedProxies:      cfg.TrustedProxies,
		DebugHeader:         cfg.DebugHeader,
		ReadMode:            cfg.ProxyReadMode,
		MaxHeaderBytes:      cfg.ProxyMaxHeaderBytes,
		HeadLimits:          cfg.ProxyHead,
		Nonces:              n.nonces,
		Tokens:              n.tokens,
		AuthTimeout:         cfg.AuthTimeout,
		Metrics:             metrics,
		Logger:              n.log,
	})
	lc := net.ListenConfig{}
	if n.ln, err = lc.Listen(ctx, "tcp", cfg.Listen); err != nil {
		n.abort()
		return nil, fmt.Errorf("%w: Listen %q: %w", ErrInvalidConfig, cfg.Listen, err)
	}
	if cfg.HTTPS != nil && cfg.TLSListen == "" {
		n.ln = tls.NewListener(n.ln, cfg.HTTPS.Config())
		n.tlsLn = n.ln
	}
	go n.serveProxy(n.ln)
	if cfg.TLSListen != "" {
		ln, err := lc.Listen(ctx, "tcp", cfg.TLSListen)
		if err != nil {
			n.abort()
			return nil, fmt.Errorf("%w: TLSListen %q: %w", ErrInvalidConfig, cfg.TLSListen, err)
		}
		n.tlsLn = tls.NewListener(ln, cfg.HTTPS.Config())
		go n.serveProxy(n.tlsLn)
	}
	if cfg.AdminListen != "" {
		if n.adminLn, err = lc.Listen(ctx, "tcp", cfg.AdminListen); err != nil {
			n.abort()
			return nil, fmt.Errorf("%w: AdminListen %q: %w", ErrInvalidConfig, cfg.AdminListen, err)
		}
		n.admin = n.newAdmin(metrics)
		go n.admin.Serve(n.adminLn)
	}

	wctx, cancel := context.WithCancel(context.Background())
	n.cancelWatch = cancel
	go func() {
		defer close(n.watchDone)
		n.watch.Run(wctx)
	}()
	rep := report.New(report.Config{
		Edge: cfg.Name, Region: cfg.Region, Table: &n.table, Coordinators: n.pool,
		Interval: cfg.ReportInterval, DialContext: cfg.DialContext, Logger: n.log,
	})
	n.checker = report.NewChecker(report.CheckerConfig{
		Edge: cfg.Name, Region: cfg.Region, Table: &n.table, Coordinators: n.pool,
		Interval: cfg.ReportInterval, DialContext: cfg.DialContext, Logger: n.log,
	})
	go func() {
		defer close(n.reportDone)
		var wg sync.WaitGroup
		wg.Go(func() { rep.Run(wctx) })
		wg.Go(func() { n.checker.Run(wctx) })
		wg.Wait()
	}()
	if err := ctx.Err(); err != nil {
		n.Close()
		return nil, err
	}
	n.log.Info("edge serving", "addr", n.Addr(), "https_addr", n.TLSAddr(), "revision", n.Revision(), "placements", n.table.Load().Placements())
	return n, nil
}

// coordinatorCreds are the credentials of every coordinator connection.
func (n *Node) coordinatorCreds() credentials.TransportCredentials {
	if n.cfg.TLS == nil {
		return insecure.NewCredentials()
	}
	return n.cfg.TLS.ClientCredentials(pki.RoleCoordinator)
}

func validate(cfg *Config) error {
	for _, f := range []struct{ name, v string }{
		{"Name", cfg.Name}, {"Region", cfg.Region}, {"DataDir", cfg.DataDir}, {"Listen", cfg.Listen},
	} {
		if f.v == "" {
			return fmt.Errorf("%w: %s is required", ErrInvalidConfig, f.name)
		}
	}
	if cfg.TLSListen != "" && cfg.HTTPS == nil {
		return fmt.Errorf("%w: TLSListen needs certificates (HTTPS; --tls-cert and --tls-key)", ErrInvalidConfig)
	}
	if cfg.ClusterID != "" {
		if err := clusterid.Validate(cfg.ClusterID); err != nil {
			return fmt.Errorf("%w: ClusterID: %v", ErrInvalidConfig, err)
		}
	}
	if cfg.TLS != nil {
		if id := cfg.TLS.Identity(); id.Role != pki.RoleEdge || id.Name != cfg.Name || id.Region != cfg.Region {
			return fmt.Errorf("%w: the certificate %s is for %s, not for edge %q in region %q: issue one with `edgecell certs issue --role edge --name %s --region %s`",
				ErrInvalidConfig, cfg.TLS.Files().Cert, id, cfg.Name, cfg.Region, cfg.Name, cfg.Region)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	return nil
}

// loadCache builds the table from the cache file; a file that cannot be
// read leaves the edge empty until a coordinator answers.
func (n *Node) loadCache() *route.Table {
	b := route.NewBuilder(n.cfg.Region)
	rev, err := n.store.Load(b)
	if err == nil && rev > 0 {
		var t *route.Table
		if t, err = b.Finish(rev); err == nil {
			n.log.Info("loaded routing cache", "revision", rev, "placements", t.Placements())
			return t
		}
	}
	if err != nil {
		n.log.Error("routing cache unusable; waiting for a coordinator", "err", err)
	}
	return route.Empty(n.cfg.Region)
}

func (n *Node) serveProxy(ln net.Listener) {
	if err := n.proxy.Serve(ln); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
		n.log.Error("proxy listener failed", "err", err)
	}
}

// abort releases what a failed Start had opened.
func (n *Node) abort() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n.proxy != nil {
		n.proxy.Shutdown(ctx)
	}
	n.closeAuth()
	if n.pool != nil {
		n.pool.Close()
	}
	if n.ln != nil {
		n.ln.Close()
	}
	if n.tlsLn != nil {
		n.tlsLn.Close()
	}
	if n.adminLn != nil {
		n.adminLn.Close()
	}
	n.persist.Close()
	n.store.Close()
}

// Addr is the bound proxy address (Listen's; HTTPS when HTTPS is set
// without TLSListen).
func (n *Node) Addr() string { return n.ln.Addr().String() }

// TLSAddr is the bound HTTPS proxy address: TLSListen's, Listen's when
// HTTPS is set without TLSListen, or "" without HTTPS.
func (n *Node) TLSAddr() string {
	if n.tlsLn == nil {
		return ""
	}
	return n.tlsLn.Addr().String()
}

// AdminAddr is the bound admin address, or "" without AdminListen.
func (n *Node) AdminAddr() string {
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}

// Name and Region are the edge's, as configured.
func (n *Node) Name() string   { return n.cfg.Name }
func (n *Node) Region() string { return n.cfg.Region }

// Revision is the revision of the table currently served; 0 before any.
func (n *Node) Revision() uint64 { return n.table.Load().Revision() }

// Coordinator is the address of the coordinator the edge streams from, or
// "" while it has none.
func (n *Node) Coordinator() string { return n.watch.Connected() }

// EndpointStatus returns endpoint id's replicated breaker and health
// status as the table the edge serves holds them, with that table's
// revision, all read from one table. A nil status means the coordinators
// never changed it (closed, unknown).
func (n *Node) EndpointStatus(id string) (breaker *pb.BreakerStatus, health *pb.HealthStatus, revision uint64) {
	t := n.table.Load()
	return t.Breaker(id), t.Health(id), t.Revision()
}

// KeyRevoked reports whether the table the edge serves holds API key id as
// revoked: from then on the edge refuses it.
func (n *Node) KeyRevoked(id string) bool {
	k := n.table.Load().Key(id)
	return k != nil && k.Revoked
}

// HealthChecks returns the ids of the endpoints this edge actively checks
// now, sorted: those of its region, and those of regions without an edge.
func (n *Node) HealthChecks() []string { return n.checker.Assigned() }

// Close stops accepting, lets requests in flight finish (up to
// ShutdownTimeout, then cuts them), stops following the coordinators,
// writes the latest table to the cache and closes it. Later calls return
// the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		defer cancel()
		var errs []error
		if err := n.proxy.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("proxy shutdown: %w", err))
		}
		if n.admin != nil {
			n.admin.Shutdown(ctx)
		}
		n.closeAuth() // after the proxy: requests in flight may still check
		n.cancelWatch()
		<-n.watchDone
		<-n.reportDone
		n.pool.Close()
		n.persist.Close()
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("edge stopped", "revision", n.Revision())
	})
	return n.closeErr
}

// closeAuth stops the nonce client and the key-set caches; a request still
// needing them gets 503.
func (n *Node) closeAuth() {
	if n.nonces != nil {
		n.nonces.Close()
	}
	if n.tokens != nil {
		n.tokens.Close()
	}
}

// tableSwapped runs after the watch applied a new routing table: tunnels
// opened with a key the table revokes are closed.
func (n *Node) tableSwapped(t *route.Table) {
	if n.proxy == nil {
		return // not serving yet: nothing is open
	}
	if closed := n.proxy.Revalidate(t); closed > 0 {
		n.log.Info("closed tunnels whose key was revoked", "tunnels", closed, "revision", t.Revision())
	}
}

// registerMetrics adds the node's gauges next to the proxy's counters.
func (n *Node) registerMetrics(reg *prometheus.Registry, metrics *proxy.Metrics) {
	reg.MustRegister(metrics,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_revision", Help: "Revision of the routing table the edge serves.",
		}, func() float64 { return float64(n.Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_placements", Help: "Placements in the routing table the edge serves.",
		}, func() float64 { return float64(n.table.Load().Placements()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_coordinator_connected", Help: "1 while the edge streams from a coordinator.",
		}, func() float64 {
			if n.watch != nil && n.watch.Connected() != "" {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_upstream_idle_connections", Help: "Pooled idle connections to endpoints.",
		}, func() float64 { return float64(n.proxy.IdleUpstreamConns()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_client_connections", Help: "Client connections open.",
		}, func() float64 { return float64(n.proxy.Load().Conns) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_client_connections_max", Help: "The cap on client connections (--max-conns); at it the edge stops accepting.",
		}, func() float64 { return float64(n.proxy.Load().MaxConns) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgecell_edge_accept_errors_total", Help: "Accepts that failed for want of a resource (file descriptors, buffers) and were retried after a backoff.",
		}, func() float64 { return float64(n.proxy.Load().AcceptErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_held_body_bytes", Help: "Memory held for signed request bodies in flight (their hash is checked before they are forwarded).",
		}, func() float64 { return float64(n.proxy.Load().HeldBodyBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_held_body_bytes_max", Help: "The budget for held signed request bodies (--max-held-body-bytes).",
		}, func() float64 { return float64(n.proxy.Load().MaxHeldBodyBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgecell_edge_held_body_rejections_total", Help: "Signed requests answered 503 because holding their body would have passed the budget.",
		}, func() float64 { return float64(n.proxy.Load().OverBudget) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgecell_edge_overloaded", Help: "1 while the edge reports itself overloaded on /readyz (connections at the cap, accepts failing, held bodies past 90% of their budget).",
		}, func() float64 {
			if n.proxy.Load().Overloaded(time.Now()) != "" {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgecell_edge_nonce_rpcs_total", Help: "CheckNonces calls to the coordinators (each carries a batch of signed requests' nonces; retries included).",
		}, func() float64 { return float64(n.nonces.Stats().RPCs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgecell_edge_nonce_rpc_errors_total", Help: "CheckNonces calls that failed (and were retried, or failed their requests closed).",
		}, func() float64 { return float64(n.nonces.Stats().RPCErrors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edgecell_edge_nonce_cache_hits_total", Help: "Signed requests refused as replays from this edge's cache of used nonces, without asking the coordinators.",
		}, func() float64 { return float64(n.nonces.Stats().CacheHits) }),
	)
}
