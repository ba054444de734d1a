//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// RunConfig is one run of the suite.
type RunConfig struct {
	Seed uint64
	// Bin is the edgecell binary.
	Bin string
	// FaultFor is how long the nemesis injects faults; Quiet how long the
	// workloads go on once everything healed.
	FaultFor, Quiet time.Duration
	// Logf prints progress.
	Logf func(format string, args ...any)
}

// Result is what a run found.
type Result struct {
	Seed       uint64
	Dir        string // the run's data dirs and logs, kept when it failed
	Faults     []FaultEvent
	Ops        int
	Hits       int
	Lin        LinResult
	Violations []Violation
	Avail      Availability
	Took       time.Duration
}

// Failed reports whether a rule was violated.
func (r *Result) Failed() bool { return len(r.Violations) > 0 }

// Summary is the run on one line: seed, faults, ops, violations,
// availability.
func (r *Result) Summary() string {
	counts := map[string]int{}
	for _, f := range r.Faults {
		counts[f.Name]++
	}
	var fs []string
	for n, k := range counts {
		fs = append(fs, fmt.Sprintf("%s=%d", n, k))
	}
	sort.Strings(fs)
	return fmt.Sprintf("seed %d: %d faults (%s), %d ops, %d backend hits, linearizability %s, %d violations, %s, took %s",
		r.Seed, len(r.Faults), strings.Join(fs, " "), r.Ops, r.Hits, linWord(r.Lin.Result), len(r.Violations), r.Avail, r.Took.Round(time.Second))
}

func linWord(c porcupine.CheckResult) string {
	switch c {
	case porcupine.Ok:
		return "ok"
	case porcupine.Illegal:
		return "VIOLATED"
	default:
		return "unknown (checker timed out)"
	}
}

// RuleRecovery: after every fault healed, the cluster has a leader, every
// member caught up and every edge is ready and connected, within a minute.
const RuleRecovery = "recovers-after-healing"

// Run runs one seed: the cluster, the workloads, the nemesis, the final
// reads, and the checkers. An error means the harness could not set the
// cluster up (nothing was checked); a broken rule is a Violation. The run's
// directory is $TMPDIR/edgecell-fault-<seed>: removed when the run passed,
// kept (and named in the result) when it did not.
func Run(ctx context.Context, cfg RunConfig) (res *Result, err error) {
	start := time.Now()
	res = &Result{Seed: cfg.Seed, Dir: filepath.Join(os.TempDir(), fmt.Sprintf("edgecell-fault-%d", cfg.Seed))}
	if err := os.RemoveAll(res.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(res.Dir, 0o755); err != nil {
		return nil, err
	}
	os.Chmod(res.Dir, 0o755) // coordinators run as other users and need to reach their data dirs
	defer func() {
		res.Took = time.Since(start)
		if err == nil && !res.Failed() {
			os.RemoveAll(res.Dir)
		}
	}()

	cut, cutErr := newNetCutter()
	if cutErr != nil {
		cfg.Logf("partitions unavailable (%v): coordinators run as this user", cutErr)
	} else {
		defer cut.close()
	}
	rec := newRecorder()
	back, err := startBackend(rec)
	if err != nil {
		return nil, err
	}
	defer back.close()
	c, err := startCluster(ctx, res.Dir, cfg.Bin, rec, cut, cfg.Logf)
	if c != nil {
		defer c.close()
	}
	if err != nil {
		return res, fmt.Errorf("start coordinators: %w", err)
	}
	if err := c.setup(ctx, back, cfg.Bin); err != nil {
		return res, err
	}
	cfg.Logf("cluster up in %s: 3 coordinators, 3 edges, key %s", time.Since(start).Round(time.Millisecond), c.keyID)

	// Workloads run through the faults and the quiet period after them.
	wctx, stopWorkloads := context.WithCancel(ctx)
	workDone := make(chan struct{})
	go func() { workloads(wctx, c, cfg.Seed); close(workDone) }()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xfa17))
	res.Faults = nemesis(ctx, c, rng, cfg.FaultFor)
	var recovery []Violation
	healErr := c.healAll(ctx)
	if err := c.waitHealthy(ctx, time.Minute); err != nil || healErr != nil {
		recovery = append(recovery, Violation{RuleRecovery, errors.Join(healErr, err).Error()})
	}
	healed := rec.now()
	cfg.Logf("healed at %s; quiet for %s", healed.Round(time.Millisecond), cfg.Quiet)
	sleep(ctx, cfg.Quiet)
	stopWorkloads()
	<-workDone

	// Every key read once more, linearizably, now that nothing is failing.
	for i, key := range registerKeys {
		err := poll(ctx, 30*time.Second, func() error {
			op := get(ctx, c, c.members[i%len(c.members)], clientRegister, key, true)
			c.rec.add(op)
			if op.Outcome != OK {
				return errors.New(op.Err)
			}
			return nil
		})
		if err != nil {
			recovery = append(recovery, Violation{RuleRecovery, fmt.Sprintf("final read of %s: %v", key, err)})
		}
	}

	h := &History{Faults: res.Faults, Live: c.liveIntervals(), Initial: initialCell}
	h.Ops, h.Hits = rec.snapshot()
	for _, p := range c.procs() {
		h.Procs = append(h.Procs, p.report())
	}
	res.Ops, res.Hits = len(h.Ops), len(h.Hits)
	res.Violations, res.Lin = check(h)
	res.Violations = append(recovery, res.Violations...)
	res.Avail = ComputeAvailability(h)
	if res.Lin.Result == porcupine.Illegal {
		path := filepath.Join(res.Dir, "linearizability.html")
		if err := porcupine.VisualizePath(res.Lin.Model, res.Lin.Info, path); err == nil {
			res.Violations = append(res.Violations, Violation{RuleLinearizable, "porcupine's visualization: " + path})
		}
	}
	if res.Failed() {
		writeHistory(filepath.Join(res.Dir, "history.txt"), h)
	}
	return res, nil
}

// linTimeout bounds porcupine; a history it cannot decide in time is
// reported as unknown, not as a pass.
const linTimeout = 2 * time.Minute

// check runs every checker on h.
func check(h *History) ([]Violation, LinResult) {
	lin := CheckLinearizable(h, linTimeout)
	var vs []Violation
	if lin.Result == porcupine.Illegal {
		vs = append(vs, Violation{RuleLinearizable, fmt.Sprintf("placement writes and linearizable reads (%d operations) are not linearizable", lin.Ops)})
	}
	vs = append(vs, CheckNonces(h)...)
	vs = append(vs, CheckFinalReads(h)...)
	vs = append(vs, CheckProcesses(h.Procs)...)
	vs = append(vs, CheckStaticStability(h)...)
	return vs, lin
}

// setup applies the routing config, creates the API key, starts the edges
// and waits until each has the key.
func (c *Cluster) setup(ctx context.Context, back *backend, bin string) error {
	cfg := back.routingConfig()
	var rev uint64
	err := poll(ctx, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := c.members[0].admin.ApplyConfig(cctx, &pb.ApplyConfigRequest{Config: cfg})
		rev = resp.GetRevision()
		return err
	})
	if err != nil {
		return fmt.Errorf("apply config: %w", err)
	}
	err = poll(ctx, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := c.members[0].admin.CreateKey(cctx, &pb.CreateKeyRequest{Name: "fault"})
		if err != nil {
			return err
		}
		c.keyID, rev = resp.GetKey().GetId(), resp.GetRevision()
		if len(resp.GetKey().GetSecrets()) == 0 {
			return errors.New("key created without a secret")
		}
		c.secret = resp.GetKey().GetSecrets()[0].GetSecret()
		return nil
	})
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	if err := c.startEdges(ctx, bin); err != nil {
		return fmt.Errorf("start edges: %w", err)
	}
	if err := c.waitEdgesAt(ctx, rev); err != nil {
		return fmt.Errorf("edges at the key's revision %d: %w", rev, err)
	}
	return nil
}

// writeHistory writes h, one operation a line, for a failed run's report.
func writeHistory(path string, h *History) {
	var b strings.Builder
	for _, f := range h.Faults {
		fmt.Fprintf(&b, "fault %s %s [%s, %s] %s\n", f.Name, f.Target, f.Start, f.End, f.Err)
	}
	for region, ivs := range h.Live {
		fmt.Fprintf(&b, "live %s %v\n", region, ivs)
	}
	ops := append([]Op(nil), h.Ops...)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	for _, op := range ops {
		fmt.Fprintf(&b, "op %s client=%d [%s, %s] %s edge=%s status=%d key=%s nonce=%s member=%s reg=%s value=%s final=%v err=%q\n",
			op.Kind, op.Client, op.Call, op.Return, op.Outcome, op.Edge, op.Status, op.KeyID, op.Nonce, op.Member, op.Key, op.Value, op.Final, op.Err)
	}
	for _, hit := range h.Hits {
		fmt.Fprintf(&b, "hit %s key=%s nonce=%s at %s\n", hit.Endpoint, hit.KeyID, hit.Nonce, hit.At)
	}
	os.WriteFile(path, []byte(b.String()), 0o644)
}
