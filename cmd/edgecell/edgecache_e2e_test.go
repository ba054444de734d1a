package main

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/cache"
)

// An edge whose cache file was damaged while it was down (cut to half its
// size, or overwritten with garbage) starts anyway: it moves the file aside,
// fetches the state from the coordinator and serves again. It never
// crash-loops on its own file.
func TestEdgeStartsWithoutADamagedCache(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a coordinator and edges as processes; skipped with -short")
	}
	bin := buildBinary(t)
	backend := httptest.NewServer(echoBackend("us-east-1", "us-east"))
	t.Cleanup(backend.Close)
	grpcAddr, rev := oneCellCluster(t, bin, t.TempDir(), backend.URL)
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)

	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"truncated to half", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage bytes", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			garbage := make([]byte, fi.Size())
			rand.NewChaCha8([32]byte{1}).Read(garbage)
			if err := os.WriteFile(path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "edge")
			path := filepath.Join(dataDir, "edge.db")
			listen := freeAddr(t)
			url := "http://" + listen
			args := []string{"edge", "--name", "edge-1", "--region", "us-east", "--data-dir", dataDir,
				"--listen", listen, "--coordinators", grpcAddr}
			serves := func(what string) {
				t.Helper()
				eventually(t, what, func() error { return expectServed(client, url, "tenant-1", "us-east") })
			}

			// A clean stop flushes the cache: the file damaged below held
			// the state, not an empty cache.
			first := startProcess(t, "edge#1", bin, args...)
			serves("first edge serves tenant-1")
			interrupt(t, first)
			requireCachedRevision(t, path, rev)

			// Killed while running, then its file damaged.
			second := startProcess(t, "edge#2", bin, args...)
			serves("second edge serves tenant-1")
			second.kill(t)
			c.damage(t, path)
			damaged, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			third := startProcess(t, "edge#3", bin, args...)
			serves("edge restarted on a damaged cache serves tenant-1")
			select {
			case <-third.done:
				t.Fatalf("edge exited (%s):\n%s", third.cmd.ProcessState, third.out)
			default:
			}
			out := third.out.String()
			if strings.Contains(out, "panic:") || strings.Contains(out, "fatal error:") {
				t.Fatalf("edge panicked:\n%s", out)
			}
			if !strings.Contains(out, "moved it aside") || !strings.Contains(out, path) {
				t.Errorf("edge log does not say which file it moved aside:\n%s", out)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("damaged cache not moved aside: %v", aside)
			}
			if kept, _ := os.ReadFile(aside[0]); !bytes.Equal(kept, damaged) {
				t.Errorf("%s does not hold the damaged file (%d bytes, want %d)", aside[0], len(kept), len(damaged))
			}
		})
	}
}

// interrupt stops p as SIGINT or SIGTERM would and waits until it is gone.
func interrupt(t *testing.T, p *process) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("interrupt %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(e2eDeadline):
		t.Fatalf("%s still running %v after SIGINT", p.name, e2eDeadline)
	}
}

// requireCachedRevision fails unless the cache file at path (no edge
// running on it) holds revision rev or later.
func requireCachedRevision(t *testing.T, path string, rev uint64) {
	t.Helper()
	s, err := cache.Open(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Revision(); err != nil || got < rev {
		t.Fatalf("cache %s is at revision %d (%v) after a clean stop, want %d", path, got, err, rev)
	}
}
