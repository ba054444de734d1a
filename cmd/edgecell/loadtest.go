package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/harness/loadtest"
)

// loadtestFlags are `edgecell loadtest`'s flags.
type loadtestFlags struct {
	cluster, edges      string
	scenario            string
	duration            time.Duration
	rate, mix           string
	maxInFlight         int
	connsPerEdge        int
	requestTimeout      time.Duration
	plainKey, signedKey string
	keyID, secret       string
	jwtToken, jwtKey    string
	jsonFile, htmlFile  string
	noProgress          bool
	simulateLatency     bool
	latencyScale        float64
}

func (a *app) loadtestCommand() *cobra.Command {
	var f loadtestFlags
	cmd := &cobra.Command{
		Use:   "loadtest (--cluster dev | --edges REGION=URL,...) [--scenario NAME|FILE]",
		Short: "Send open-loop load from simulated regions, with faults, and report",
		Long: `Loadtest sends HTTP load to edgecell edges from clients in several regions,
open-loop (requests leave on schedule whatever the latency; latency is measured
from the scheduled time), and reports per region and request kind: rate,
p50/p90/p99/p99.9, errors by class, replays blocked and accepted, failover gaps,
the scenario's events and the tool's own overhead.

Targets:
  --cluster dev                start a three-region dev cluster in this process
                               (with a signed cell, cell-signed, key signed-1,
                               and a JWT cell, cell-jwt, key jwt-1, trusting an
                               in-process ES256 issuer),
                               its links between regions delayed by the latency
                               matrix (--simulate-latency, --latency-scale)
  --edges us-east=URL,...      a running cluster; --addr for the admin API
                               (creates the API key for signed requests unless
                               --key-id/--secret are given; placement churn);
                               jwt requests need --jwt-token and --jwt-key

Clients of a region send to their region's edge and, while it refuses
connections or times out, to the next nearest edge by the latency matrix.

Scenarios (--scenario): steady, leader-kill, backend-outage, config-churn,
replay-storm, edge-kill, region-partition (ap-south cut off from the other
regions from 1/3 to 2/3 of the run), or a YAML file:

  name: my-test
  duration: 30s
  rate: {us-east: 2000, eu-west: 500}     # or a total: rate: 2500
  mix: {plain: 60, signed: 20, jwt: 15, replay: 5}
  steps:
    - {at: 33%, action: kill-leader}
    - {at: 66%, action: restart-coordinators}
    - {at: 10s, action: stop-backends, region: us-east}
    - {at: 20s, action: start-backends, region: us-east}
    - {at: 5s, action: kill-edge, region: eu-west}
    - {at: 0s, action: churn-placements, per_second: 20, until: 90%}
    - {at: 40%, action: partition-region, region: ap-south}
    - {at: 60%, action: heal-partition}

Steps that control processes (all but churn-placements) need --cluster dev;
partition-region and heal-partition also need --simulate-latency (the cut
is made in the simulated network).
--duration, --rate and --mix override the scenario's.

The exit status is 1 when an invariant is broken (an accepted replay, a lost
acknowledged placement write), after the reports are written.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.loadtest(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cluster, "cluster", "", `"dev": start an in-process dev cluster to test`)
	fl.StringVar(&f.edges, "edges", "", "edges of a running cluster: region=http://host:port,...")
	fl.StringVar(&f.scenario, "scenario", "steady", "built-in scenario name or YAML scenario file")
	fl.DurationVar(&f.duration, "duration", 30*time.Second, "how long to send (default: the scenario's)")
	fl.StringVar(&f.rate, "rate", "1000", "requests per second: a total split over the regions, or region=rate,...")
	fl.StringVar(&f.mix, "mix", "plain=70,signed=25,replay=5", "request mix: plain=W,signed=W,jwt=W,replay=W (default: the scenario's)")
	fl.IntVar(&f.maxInFlight, "max-in-flight", loadtest.DefaultMaxInFlight, "requests in flight per region at most; more count as client-saturated")
	fl.IntVar(&f.connsPerEdge, "connections", loadtest.DefaultConnsPerEdge, "connections per edge at most (a rate R at latency L needs about R×L)")
	fl.DurationVar(&f.requestTimeout, "request-timeout", loadtest.DefaultRequestTimeout, "timeout of each request")
	fl.StringVar(&f.plainKey, "plain-key", loadtest.DevPlainKey, "routing key of plain requests (a cell without auth)")
	fl.StringVar(&f.signedKey, "signed-key", loadtest.DevSignedKey, "routing key of signed requests (a cell with HMAC auth)")
	fl.StringVar(&f.keyID, "key-id", "", "API key id to sign with (default: create one through --addr, revoked at the end)")
	fl.StringVar(&f.secret, "secret", "", "secret of --key-id")
	fl.StringVar(&f.jwtToken, "jwt-token", "", "with --edges: bearer token of jwt requests")
	fl.StringVar(&f.jwtKey, "jwt-key", "", "with --edges: routing key of jwt requests (a cell with JWT auth)")
	fl.StringVar(&f.jsonFile, "json", "", "also write the report as JSON to this file")
	fl.StringVar(&f.htmlFile, "html", "", "also write the report as a self-contained HTML page to this file")
	fl.BoolVar(&f.simulateLatency, "simulate-latency", true, "with --cluster dev: delay connections between regions by the latency matrix")
	fl.Float64Var(&f.latencyScale, "latency-scale", 1, "with --cluster dev: multiply every simulated delay (0.1 keeps runs fast)")
	fl.BoolVar(&f.noProgress, "no-progress", false, "no progress line on stderr")
	return cmd
}

// loadtestPlan is the scenario with the flags' overrides.
func loadtestPlan(cmd *cobra.Command, f loadtestFlags) (loadtest.Plan, error) {
	var plan loadtest.Plan
	if file, err := os.Open(f.scenario); err == nil {
		plan, err = loadtest.ParseScenario(file)
		file.Close()
		if err != nil {
			return plan, usagef("--scenario %s: %v", f.scenario, err)
		}
	} else if plan, err = loadtest.Builtin(f.scenario); err != nil {
		return plan, usageError{err}
	}
	changed := cmd.Flags().Changed
	if changed("duration") || plan.Duration == 0 {
		if f.duration <= 0 {
			return plan, usagef("--duration must be positive")
		}
		plan.Duration = f.duration
	}
	if changed("rate") || (len(plan.Rates) == 0 && plan.TotalRate == 0) {
		rates, total, err := loadtest.ParseRates(f.rate)
		if err != nil {
			return plan, usageError{err}
		}
		plan.Rates, plan.TotalRate = rates, total
	}
	if changed("mix") || len(plan.Mix) == 0 {
		mix, err := loadtest.ParseMix(f.mix)
		if err != nil {
			return plan, usageError{err}
		}
		plan.Mix = mix
	}
	return plan, nil
}

func (a *app) loadtest(cmd *cobra.Command, f loadtestFlags) error {
	plan, err := loadtestPlan(cmd, f)
	if err != nil {
		return err
	}
	if (f.keyID == "") != (f.secret == "") {
		return usagef("--key-id and --secret go together")
	}
	ctx := cmd.Context()
	var target loadtest.Target
	switch {
	case f.cluster != "" && f.edges != "":
		return usagef("--cluster and --edges exclude each other")
	case f.cluster == "dev":
		fmt.Fprintln(a.err, "starting the dev cluster...")
		if f.latencyScale < 0 {
			return usagef("--latency-scale %v: want a factor >= 0", f.latencyScale)
		}
		iss, err := loadtest.NewIssuer()
		if err != nil {
			return err
		}
		defer iss.Close()
		c, err := devcluster.Start(ctx, devcluster.Options{
			Config: loadtest.DevConfigJWT(iss), SimulateLatency: f.simulateLatency, LatencyScale: f.latencyScale,
			Insecure: a.insecure,
		})
		if err != nil {
			return err
		}
		defer c.Close()
		if target, err = loadtest.DevTarget(c); err != nil {
			return err
		}
		target.JWTKey, target.JWTToken = loadtest.DevJWTKey, iss.Token
		if cmd.Flags().Changed("plain-key") || cmd.Flags().Changed("signed-key") {
			target.PlainKey, target.SignedKey = f.plainKey, f.signedKey
		}
	case f.cluster != "":
		return usagef("--cluster %q: the only cluster it can start is \"dev\"", f.cluster)
	case f.edges != "":
		edges, err := loadtest.ParseEdges(f.edges)
		if err != nil {
			return usageError{err}
		}
		admin, err := a.admin()
		if err != nil {
			return err
		}
		if plan.Mix[loadtest.KindJWT] > 0 && (f.jwtToken == "" || f.jwtKey == "") {
			return usagef("--mix jwt=%d: with --edges, jwt requests need --jwt-token TOKEN and --jwt-key ROUTINGKEY (a key placed on a cell with JWT auth)", plan.Mix[loadtest.KindJWT])
		}
		target = loadtest.Target{Edges: edges, Admin: admin, PlainKey: f.plainKey, SignedKey: f.signedKey, KeyID: f.keyID, Secret: f.secret, JWTKey: f.jwtKey}
		if f.jwtToken != "" {
			target.JWTToken = func() (string, error) { return f.jwtToken, nil }
		}
		gctx, cancel := context.WithTimeout(ctx, a.timeout)
		cfg, err := admin.GetConfig(gctx, &pb.GetConfigRequest{Consistency: pb.Consistency_CONSISTENCY_STALE})
		cancel()
		if err != nil {
			fmt.Fprintf(a.err, "note: no routing config from %s (%v): failover goes to the other edges in name order\n", a.addr, a.describeError(err))
		}
		target.Latencies = cfg.GetConfig().GetLatencies()
	default:
		return usagef("give a target: --cluster dev or --edges region=URL,...")
	}

	opts := loadtest.Options{Plan: plan, Target: target, MaxInFlight: f.maxInFlight, ConnsPerEdge: f.connsPerEdge, RequestTimeout: f.requestTimeout}
	if !f.noProgress {
		opts.Progress, opts.ProgressInPlace = a.err, isTerminal(a.err)
	}
	rep, err := loadtest.Run(ctx, opts)
	if errors.Is(err, loadtest.ErrBadOptions) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	return a.writeLoadtestReport(rep, f)
}

func (a *app) writeLoadtestReport(rep *loadtest.Report, f loadtestFlags) error {
	if err := rep.WriteTable(a.out); err != nil {
		return err
	}
	write := func(name string, render func(io.Writer) error) error {
		if name == "" {
			return nil
		}
		file, err := os.Create(name)
		if err != nil {
			return err
		}
		return errors.Join(render(file), file.Close())
	}
	err := errors.Join(
		write(f.jsonFile, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}),
		write(f.htmlFile, rep.WriteHTML),
	)
	if err != nil {
		return err
	}
	return rep.Err()
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
