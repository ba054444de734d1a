package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgecell/edgecell/edgenode/route"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Config configures a Server. Zero durations and sizes take the defaults
// shown.
type Config struct {
	// Region is this edge's region, the suffix of every X-Edge-Ray.
	Region string
	// Table holds the routing table; each request loads it once and
	// finishes on that table. Required.
	Table *atomic.Pointer[route.Table]
	// DialContext opens upstream connections; nil uses a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is the base for https endpoints (ServerName is filled in per
	// endpoint); nil uses the system roots.
	TLSConfig *tls.Config
	// DialTimeout bounds one connection attempt to an endpoint before the
	// next endpoint is tried (one retry per request). Default 2s.
	DialTimeout time.Duration
	// ResponseTimeout bounds how long the upstream may take to start its
	// response (its status line and headers) once the whole request was
	// sent; past it the client gets 504 and the connection is dropped. The
	// request is not retried: the upstream may still be working on it.
	// For a request whose body streams, it starts once the body was sent
	// whole (the upload may be slow). Default 60s, like nginx's
	// proxy_read_timeout.
	ResponseTimeout time.Duration
	// MaxIdlePerHost caps the idle connections kept per upstream address.
	// It should exceed the concurrency expected towards one upstream. Default 1024.
	MaxIdlePerHost int
	// UpstreamIdleTimeout closes upstream connections idle that long. Default 60s.
	UpstreamIdleTimeout time.Duration
	// HeadTimeout bounds the reading of a request head: a new connection's
	// first head is due within it from the accept, a later one within it
	// from its first byte. Past it the client gets 408 and the connection
	// closes (slowloris). Default 10s.
	HeadTimeout time.Duration
	// ClientIdleTimeout closes a keep-alive client connection that starts
	// no next request for that long, and one whose request body stalls for
	// that long between reads. Default 75s.
	ClientIdleTimeout time.Duration
	// TunnelIdleTimeout closes an upgraded (websocket) tunnel that carries
	// no byte either way for that long. Default 5m, Envoy's
	// stream_idle_timeout.
	TunnelIdleTimeout time.Duration
	// MaxConns caps concurrent client connections across the Server's
	// listeners: at the cap it stops accepting (connections wait in the
	// listen backlog) and reports itself overloaded. Default half the
	// process's file descriptor limit, the other half being left to
	// upstream connections.
	MaxConns int
	// MaxHeldBodyBytes is the edge's budget for signed request bodies held
	// in memory to check their hash. A held body grows only as its bytes
	// arrive; one that would take the edge past the budget gets 503 with
	// Retry-After. Default 256 MiB.
	MaxHeldBodyBytes int64
	// WriteTimeout bounds how long one write to a client may block (a client
	// that stops reading). Default 60s.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request or response head; a request over it
	// gets 431. Default 64 KiB.
	MaxHeaderBytes int
	// HeadLimits bound the fields, Connection tokens and target of a
	// request head, and say which header names and upgrades pass.
	HeadLimits
	// TrustedProxies are the peers (load balancers, CDNs in front of the
	// edge) whose X-Forwarded-For, -Proto, -Host and Forwarded fields are
	// kept and extended; from any other peer they are dropped and set by
	// the edge alone. Default none (Caddy's trusted_proxies).
	TrustedProxies []netip.Prefix
	// DebugHeader says who gets X-Edge-Route back for X-Edge-Debug: 1.
	// Default DebugOff.
	DebugHeader DebugPolicy
	// ReadMode chooses how connections are read. Default ReadFirst (see
	// DESIGN.md, "Waiting before reading").
	ReadMode ReadMode
	// Nonces checks the nonces of HMAC-signed requests with the
	// coordinators. Nil: every request to an HMAC cell gets 503 once its
	// signature passed (never accepted without the check).
	Nonces NonceChecker
	// Tokens verifies bearer tokens for JWT cells. Nil: such requests get 503.
	Tokens TokenVerifier
	// AuthTimeout bounds a bearer token's verification, which waits for the
	// first fetch of an issuer's key set; past it the client gets 503.
	// (Nonce checks are bounded by the NonceChecker.) Default 2s.
	AuthTimeout time.Duration
	// Metrics receives counters; nil disables them.
	Metrics *Metrics
	// Logger; nil discards.
	Logger *slog.Logger
}

// DebugPolicy says who may ask for X-Edge-Route (how the edge chose, or
// why it found no, endpoint), which tells the asker about the cell's
// endpoints and their health.
type DebugPolicy uint8

const (
	DebugOff     DebugPolicy = iota // nobody
	DebugTrusted                    // peers in TrustedProxies
	DebugOn                         // everyone (a dev or lab edge)
)

// ParseDebugPolicy reads "off", "trusted" or "on".
func ParseDebugPolicy(s string) (DebugPolicy, error) {
	switch s {
	case "off":
		return DebugOff, nil
	case "trusted":
		return DebugTrusted, nil
	case "on":
		return DebugOn, nil
	}
	return 0, fmt.Errorf("debug header policy %q: want off, trusted or on", s)
}

// trusts reports whether the peer address host is in TrustedProxies.
func (s *Server) trusts(host string) bool {
	if len(s.cfg.TrustedProxies) == 0 {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// bufSize is the size of the per-connection read and write buffers: a
// typical head and small body fit, larger bodies bypass them.
const bufSize = 4096

// Server is the proxy. Create it with New, run it with Serve, stop it with
// Shutdown (which must be called to release its background goroutine).
type Server struct {
	cfg       Config
	log       *slog.Logger
	metrics   *Metrics
	raySuffix string
	slack     time.Duration // how far a head deadline may be off before it is moved
	ups       upstreams
	bufs      sync.Pool // *[copyBufSize]byte
	conns     sync.Pool // *conn
	readers   sync.Pool // *bufio.Reader, a connection's while a request is on the way
	writers   sync.Pool // *bufio.Writer, likewise

	// Load against the limits (load.go).
	slots       chan struct{} // one per connection open (or being accepted), MaxConns deep
	open        atomic.Int64  // connections open
	heldBytes   atomic.Int64  // capacity of the held bodies of requests in flight
	acceptErrs  atomic.Uint64
	lastAcceptE atomic.Int64 // unix nanoseconds of the last accept failure
	overBudget  atomic.Uint64

	mu       sync.Mutex
	active   map[*conn]struct{}
	tunnels  map[*tunnel]struct{} // open tunnels, for Revalidate
	lns      map[net.Listener]struct{}
	closing  atomic.Bool
	wg       sync.WaitGroup
	stopJan  chan struct{}
	janDone  chan struct{}
	stopOnce sync.Once
}

// New creates a Server and starts its background sweeper of idle upstream
// connections.
func New(cfg Config) *Server {
	if cfg.DialContext == nil {
		cfg.DialContext = (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext
	}
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &tls.Config{}
	}
	cfg.DialTimeout = orDefault(cfg.DialTimeout, 2*time.Second)
	cfg.ResponseTimeout = orDefault(cfg.ResponseTimeout, 60*time.Second)
	cfg.UpstreamIdleTimeout = orDefault(cfg.UpstreamIdleTimeout, 60*time.Second)
	cfg.HeadTimeout = orDefault(cfg.HeadTimeout, 10*time.Second)
	cfg.ClientIdleTimeout = orDefault(cfg.ClientIdleTimeout, 75*time.Second)
	cfg.TunnelIdleTimeout = orDefault(cfg.TunnelIdleTimeout, 5*time.Minute)
	cfg.MaxConns = orDefault(cfg.MaxConns, defaultMaxConns())
	cfg.MaxHeldBodyBytes = orDefault(cfg.MaxHeldBodyBytes, 256<<20)
	cfg.WriteTimeout = orDefault(cfg.WriteTimeout, 60*time.Second)
	cfg.MaxHeaderBytes = orDefault(cfg.MaxHeaderBytes, 64<<10)
	cfg.HeadLimits = cfg.HeadLimits.withDefaults()
	cfg.MaxIdlePerHost = orDefault(cfg.MaxIdlePerHost, 1024)
	cfg.AuthTimeout = orDefault(cfg.AuthTimeout, 2*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		raySuffix: "-" + cfg.Region,
		slack:     min(deadlineSlack, cfg.HeadTimeout/10),
		ups: upstreams{
			dial:        cfg.DialContext,
			tlsConfig:   cfg.TLSConfig,
			dialTimeout: cfg.DialTimeout,
			maxIdle:     cfg.MaxIdlePerHost,
			idleTimeout: cfg.UpstreamIdleTimeout,
			bufSize:     bufSize,
			readMode:    cfg.ReadMode,
		},
		slots:   make(chan struct{}, cfg.MaxConns),
		active:  map[*conn]struct{}{},
		lns:     map[net.Listener]struct{}{},
		stopJan: make(chan struct{}),
		janDone: make(chan struct{}),
	}
	s.bufs.New = func() any { return new([copyBufSize]byte) }
	s.conns.New = func() any { return &conn{s: s, bodyDone: make(chan error, 1)} }
	s.readers.New = func() any { return bufio.NewReaderSize(nil, bufSize) }
	s.writers.New = func() any { return bufio.NewWriterSize(nil, bufSize) }
	go s.janitor()
	return s
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Serve accepts connections on ln until Shutdown, serving each on its own
// goroutine. It returns ErrServerClosed after Shutdown, or the accept error
// that stopped it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		// A slot first: at the cap, connections wait in the listen backlog
		// (backpressure) instead of costing a goroutine each.
		select {
		case s.slots <- struct{}{}:
		case <-s.stopJan:
			return ErrServerClosed
		}
		nc, err := ln.Accept()
		if err != nil {
			<-s.slots
			if s.closing.Load() {
				return ErrServerClosed
			}
			if !temporaryAcceptError(err) {
				return err
			}
			// Out of file descriptors or similar: count it, report not
			// ready (Overloaded), back off, keep serving.
			s.acceptErrs.Add(1)
			s.lastAcceptE.Store(time.Now().UnixNano())
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-s.stopJan:
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		c := s.conns.Get().(*conn)
		c.attach(nc)
		if !s.track(c) {
			nc.Close()
			<-s.slots
			return ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.active[c] = struct{}{}
	s.open.Add(1)
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.active, c)
	s.open.Add(-1)
	s.mu.Unlock()
	<-s.slots
	s.wg.Done()
}

// Shutdown stops accepting, closes idle client connections, lets requests in
// flight finish (each connection closes after its current response) until
// ctx is done, then closes whatever is left. It returns ctx's error if it had
// to cut requests short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.active {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stopJan) })

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.active {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
	}
	<-s.janDone
	s.ups.closeIdle()
	return err
}

// IdleUpstreamConns is the number of pooled idle upstream connections.
func (s *Server) IdleUpstreamConns() int { return s.ups.idleCount() }

func (s *Server) janitor() {
	defer close(s.janDone)
	t := time.NewTicker(max(s.cfg.UpstreamIdleTimeout/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stopJan:
			return
		case now := <-t.C:
			s.ups.sweep(now)
		}
	}
}
