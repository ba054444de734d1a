// Command edge runs an edgecell edge for the proxy benchmarks (deploy/bench/proxy.sh, idle.sh)
// without any coordinator: it writes a routing snapshot that sends every
// request to --upstream into the edge's bbolt cache, then starts the edge
// with its only coordinator address unreachable. The edge therefore serves
// from its cache, the fail-static start path, exactly as a real edge does
// when it starts during a coordinator outage. It runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/edgecell/edgecell/edgenode"
	"github.com/edgecell/edgecell/edgenode/cache"
	"github.com/edgecell/edgecell/edgenode/proxy"
	"github.com/edgecell/edgecell/edgenode/tlsterm"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18182", "proxy listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:18180", "URL of the upstream every request goes to")
	dataDir := flag.String("data-dir", "", "data directory (required; its cache is overwritten)")
	key := flag.String("key", "bench", "routing key placed on the upstream's cell")
	placements := flag.Int("placements", 100000, "placements in the table (realistic lookups)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	readMode := flag.String("read-mode", "read-first", "proxy read mode: read-first (default) or wait-first")
	tlsListen := flag.String("tls-listen", "", "HTTPS listen address (needs --tls-cert and --tls-key)")
	tlsCert := flag.String("tls-cert", "", "PEM certificate for --tls-listen")
	tlsKey := flag.String("tls-key", "", "PEM key for --tls-listen")
	maxConns := flag.Int("max-conns", 0, "cap on concurrent client connections (0: the edge's default, half the fd limit)")
	idleTimeout := flag.Duration("idle-timeout", 0, "close keep-alive client connections idle that long (0: the edge's default, 75s)")
	headTimeout := flag.Duration("head-timeout", 0, "bound on reading a request head, a new connection's first byte included (0: the edge's default, 10s)")
	flag.Parse()
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "edge: --data-dir is required")
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "edge:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	// The fields of the edge's Config the flags set besides the listeners.
	tuning := edgenode.Config{MaxConns: *maxConns, ClientIdleTimeout: *idleTimeout, HeadTimeout: *headTimeout}
	https := edgenode.Config{TLSListen: *tlsListen}
	if *tlsListen != "" {
		certs, err := tlsterm.New([]tlsterm.Pair{{Cert: *tlsCert, Key: *tlsKey}}, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "edge:", err)
			os.Exit(2)
		}
		https.HTTPS = certs
	}
	if err := run(*listen, https, tuning, *upstream, *dataDir, *key, *readMode, *placements); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "edge:", err)
		os.Exit(1)
	}
}

// run serves; https holds the HTTPS fields of the edge's Config (none: HTTP
// only), tuning its MaxConns, ClientIdleTimeout and HeadTimeout (zero: defaults).
func run(listen string, https, tuning edgenode.Config, upstream, dataDir, key, readMode string, placements int) error {
	st := &pb.State{Revision: 1, Config: &pb.RoutingConfig{
		Regions: []*pb.Region{{Name: "bench"}},
		Cells: []*pb.Cell{{Id: "bench-cell", Endpoints: []*pb.Endpoint{
			{Id: "upstream", Url: upstream, Region: "bench", Weight: 1},
		}}},
		Placements: []*pb.Placement{{Key: key, Cell: "bench-cell"}},
	}}
	for i := 1; i < placements; i++ {
		st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: fmt.Sprintf("tenant-%07d", i), Cell: "bench-cell"})
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	store, err := cache.Open(filepath.Join(dataDir, "edge.db"), log)
	if err != nil {
		return err
	}
	if err := store.Write(cache.Update{Reset: st}); err != nil {
		store.Close()
		return err
	}
	if err := store.Close(); err != nil {
		return err
	}
	st = nil // let the proto go: the edge holds only its table

	mode := proxy.ReadFirst
	switch readMode {
	case "read-first":
	case "wait-first":
		mode = proxy.WaitFirst
	default:
		return fmt.Errorf("--read-mode %q: want read-first or wait-first", readMode)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := edgenode.Start(ctx, edgenode.Config{
		Name: "bench-edge", Region: "bench", DataDir: dataDir, Listen: listen,
		Coordinators:  []string{"127.0.0.1:1"}, // nobody there: fail-static
		Logger:        log,
		ProxyReadMode: mode,
		HTTPS:         https.HTTPS,
		TLSListen:     https.TLSListen,

		MaxConns:          tuning.MaxConns,
		ClientIdleTimeout: tuning.ClientIdleTimeout,
		HeadTimeout:       tuning.HeadTimeout,
	})
	if err != nil {
		return err
	}
	fmt.Printf("edge serving on %s at revision %d\n", n.Addr(), n.Revision())
	<-ctx.Done()
	return n.Close()
}
