package main

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/testutil"
)

// scalePlacements is how many placements TestNewEdgeSyncsAMillionPlacements
// applies: a million, or $EDGECELL_SCALE_PLACEMENTS.
func scalePlacements(t *testing.T) int {
	if v := os.Getenv("EDGECELL_SCALE_PLACEMENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EDGECELL_SCALE_PLACEMENTS=%q: want a positive number", v)
		}
		return n
	}
	return 1_000_000
}

// TestNewEdgeSyncsAMillionPlacements applies a config of a million
// placements to a coordinator process, starts a new edge, and expects it
// to proxy a request for the last key (its first sync, a reset far larger
// than gRPC's 4 MiB message limit, comes in parts), as must an edge that
// followed the coordinator during the apply (the change is as large);
// then one more placement reaches both as a change.
func TestNewEdgeSyncsAMillionPlacements(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a coordinator and an edge as processes with a million placements; skipped with -short")
	}
	n := scalePlacements(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	t.Cleanup(backend.Close)
	grpcAddr, _ := oneCellCluster(t, bin, dir, backend.URL)

	// An edge that follows the coordinator before the apply gets it as one
	// change far over 4 MiB: it must come as a reset in parts instead.
	early := freeAddr(t)
	startProcess(t, "early-edge", bin, "edge", "--name", "edge-early", "--region", "us-east",
		"--data-dir", filepath.Join(dir, "early"), "--listen", early, "--coordinators", grpcAddr)
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	get := func(addr, key string) error {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Header.Set("X-Routing-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s at %s: status %d", key, addr, resp.StatusCode)
		}
		return nil
	}
	eventually(t, "the early edge serves", func() error { return get(early, "tenant-1") })

	cfg := filepath.Join(dir, "big.yaml")
	f, err := os.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "regions: [{name: us-east}]\ncells:\n  - id: cell-1\n    endpoints:\n      - {id: us-east-1, url: %q, region: us-east}\nplacements:\n", backend.URL)
	for i := range n {
		fmt.Fprintf(w, "  - {key: tenant-%07d, cell: cell-1}\n", i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	start := time.Now()
	if out, err := cliRun(bin, grpcAddr, "", "--timeout", "5m", "apply", "-f", cfg); err != nil {
		t.Fatalf("apply -f of %d placements: %v %s", n, err, out)
	}
	t.Logf("apply -f of %d placements: %v", n, time.Since(start).Round(time.Millisecond))

	listen := freeAddr(t)
	start = time.Now()
	edge := startProcess(t, "edge", bin, "edge", "--name", "edge-new", "--region", "us-east",
		"--data-dir", filepath.Join(dir, "edge"), "--listen", listen, "--coordinators", grpcAddr)
	last := fmt.Sprintf("tenant-%07d", n-1)
	testutil.Eventually(t, 2*time.Minute, func() error { return get(listen, last) })
	t.Logf("new edge: first sync of %d placements and a request for the last key %v after start; VmRSS %d MiB",
		n, time.Since(start).Round(time.Millisecond), procStatusKB(t, edge.cmd.Process.Pid, "VmRSS")>>10)

	testutil.Eventually(t, 2*time.Minute, func() error { return get(early, last) })

	start = time.Now()
	out, err := cliRun(bin, grpcAddr, "", "--timeout", "2m", "get", "config", "-o", "json")
	if err != nil || !strings.Contains(out, last) {
		t.Fatalf("get config of %d placements (%d bytes out): %v", n, len(out), err)
	}
	t.Logf("get config: %d bytes in %v", len(out), time.Since(start).Round(time.Millisecond))

	if out, err := cliRun(bin, grpcAddr, "", "placement", "put", "tenant-new", "cell-1"); err != nil {
		t.Fatalf("placement put: %v %s", err, out)
	}
	for _, addr := range []string{listen, early} {
		eventually(t, "one more placement reaches the edges", func() error { return get(addr, "tenant-new") })
	}
}
