//go:build fault

package fault

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// fixedSeeds run on every `make fault`, with one random seed after them.
var fixedSeeds = []uint64{1, 2, 3}

const (
	faultFor = 25 * time.Second
	quiet    = 5 * time.Second
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// binary builds cmd/edgecell once per test process, static, into a
// directory every uid may read (coordinators may run as other users).
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "edgecell-fault-bin-")
		if buildErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		binPath = filepath.Join(binDir, "edgecell")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/edgecell/edgecell/cmd/edgecell")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// seedsFromEnv is FAULT_SEED when set (replaying one schedule), else the
// fixed seeds and one random seed.
func seedsFromEnv(t *testing.T) []uint64 {
	if s := os.Getenv("FAULT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FAULT_SEED=%q: want an unsigned integer", s)
		}
		return []uint64{seed}
	}
	return append(append([]uint64(nil), fixedSeeds...), randomSeed())
}

func randomSeed() uint64 { return uint64(time.Now().UnixNano()) % 1_000_000_000 }

// runSeed runs one seed and reports it; it fails t on a violation. With
// terse, the run's progress (faults as they happen) is printed only if it
// failed.
func runSeed(t *testing.T, seed uint64, terse bool) *Result {
	t.Helper()
	fmt.Printf("=== fault seed %d (replay: make fault FAULT_SEED=%d)\n", seed, seed)
	logf := t.Logf
	if terse {
		var mu sync.Mutex
		var progress []string
		logf = func(format string, args ...any) {
			mu.Lock()
			progress = append(progress, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		defer func() {
			if t.Failed() {
				mu.Lock()
				t.Log("progress:\n" + strings.Join(progress, "\n"))
				mu.Unlock()
			}
		}()
	}
	res, err := Run(context.Background(), RunConfig{Seed: seed, Bin: binary(t), FaultFor: faultFor, Quiet: quiet, Logf: logf})
	if err != nil {
		dir := ""
		if res != nil {
			dir = " (data dirs and logs kept in " + res.Dir + ")"
		}
		t.Fatalf("seed %d: harness: %v%s", seed, err, dir)
	}
	for _, f := range res.Faults {
		if f.Err != "" {
			t.Logf("seed %d: fault %s (%s) did not recover cleanly: %s", seed, f.Name, f.Target, f.Err)
		}
	}
	if !terse {
		t.Log(res.Summary())
	}
	if res.Failed() {
		var b strings.Builder
		for _, v := range res.Violations {
			fmt.Fprintf(&b, "\n  - %s", v)
		}
		t.Errorf("seed %d violated %d rules (replay: make fault FAULT_SEED=%d; data dirs, logs and history kept in %s):%s",
			seed, len(res.Violations), seed, res.Dir, b.String())
	}
	return res
}

// TestFault runs the fault suite: a few fixed seeds and one random one, or
// FAULT_SEED alone.
func TestFault(t *testing.T) {
	for _, seed := range seedsFromEnv(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runSeed(t, seed, false) })
	}
}

// TestSoak runs SOAK_RUNS random seeds (skipped without it), one line per
// run and a total line.
func TestSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SOAK_RUNS"))
	if n <= 0 {
		t.Skip("set SOAK_RUNS=N (make soak SOAK_RUNS=N)")
	}
	var failed []string
	faults, ops, violations, unknownLin := 0, 0, 0, 0
	base := randomSeed()
	for i := range n {
		seed := base + uint64(i)
		var res *Result
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { res = runSeed(t, seed, true) })
		if res == nil {
			failed = append(failed, fmt.Sprintf("%d (harness)", seed))
			fmt.Printf("soak %d/%d seed %d: harness failed\n", i+1, n, seed)
			continue
		}
		fmt.Printf("soak %d/%d %s\n", i+1, n, res.Summary())
		faults += len(res.Faults)
		ops += res.Ops
		violations += len(res.Violations)
		if res.Lin.Result == porcupine.Unknown {
			unknownLin++
		}
		if res.Failed() {
			failed = append(failed, strconv.FormatUint(seed, 10))
		}
	}
	fmt.Printf("soak total: %d runs, %d faults, %d ops, %d violations, %d runs whose linearizability check timed out (unknown), failing seeds: [%s]\n",
		n, faults, ops, violations, unknownLin, strings.Join(failed, " "))
}
