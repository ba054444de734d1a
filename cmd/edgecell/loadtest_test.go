package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecell/edgecell/internal/harness/loadtest"
)

// TestLoadtestLeaderKill runs `edgecell loadtest --cluster dev --scenario
// leader-kill` in-process: the coordinator leader dies a third of the way in
// and comes back at two thirds, with inter-region latencies simulated at a
// tenth of the sample matrix. No replay is accepted, no plain request fails
// (edges serve from their snapshot), and the JSON report is complete.
func TestLoadtestLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dev cluster")
	}
	htmlFile := filepath.Join(t.TempDir(), "report.html")
	rep, out := runLoadtest(t, "--scenario", "leader-kill", "--duration", "6s", "--rate", "200", "--html", htmlFile,
		"--mix", "plain=60,signed=20,jwt=15,replay=5")
	if rep.Schema != loadtest.SchemaVersion || rep.Scenario != "leader-kill" || !rep.OK || len(rep.Regions) != 3 {
		t.Fatalf("report header: schema %q scenario %q ok %v regions %d", rep.Schema, rep.Scenario, rep.OK, len(rep.Regions))
	}
	if rep.Replays.Accepted != 0 || rep.Replays.Blocked == 0 {
		t.Errorf("replays %+v: want some blocked and none accepted", rep.Replays)
	}
	for _, inv := range rep.Invariants {
		if inv.Name == loadtest.InvariantNoRouteOpenBreaker && (!inv.Checked || inv.Violations != 0) {
			t.Errorf("breaker invariant %+v: want it checked against the Watch history, with no violation", inv)
		}
	}
	for _, rr := range rep.Regions {
		if rr.Total.Requests == 0 || rr.Total.Latency.P50 <= 0 || rr.Total.Latency.P50 > rr.Total.Latency.P99 || len(rr.Timeline) == 0 {
			t.Errorf("%s: total %+v, %d timeline points", rr.Region, rr.Total, len(rr.Timeline))
		}
		for _, k := range rr.Kinds {
			if k.Kind == loadtest.KindPlain && (k.Requests == 0 || k.OK != k.Requests) {
				t.Errorf("%s: plain requests %d, ok %d, errors %v: want every plain request served while the leader is down", rr.Region, k.Requests, k.OK, k.Errors)
			}
			// Edges verify tokens against the issuer's JWKS: no coordinator.
			if k.Kind == loadtest.KindJWT && (k.Requests == 0 || k.OK != k.Requests) {
				t.Errorf("%s: jwt requests %d, ok %d, errors %v: want every jwt request served while the leader is down", rr.Region, k.Requests, k.OK, k.Errors)
			}
		}
	}
	var killed, restarted bool
	for _, e := range rep.Events {
		if e.Error != "" {
			t.Errorf("event %+v failed", e)
		}
		killed = killed || (e.Action == "kill-leader" && e.Detail != "" && e.AtS >= 1.5 && e.AtS < 3)
		restarted = restarted || (e.Action == "restart-coordinators" && e.Detail != "")
	}
	if !killed || !restarted {
		t.Errorf("events %+v: want the leader killed at about 2s and restarted", rep.Events)
	}
	if html, err := os.ReadFile(htmlFile); err != nil || strings.Count(string(html), `class="latency-chart"`) != 3 {
		t.Errorf("HTML report: %v, want 3 charts", err)
	}
	if !strings.Contains(out.String(), "no-accepted-replay") || !strings.Contains(out.String(), "kill-leader") {
		t.Errorf("table lacks the invariants or events:\n%s", out)
	}
}

// runLoadtest runs `edgecell loadtest --cluster dev --latency-scale 0.1` with
// args in-process, wants exit status 0, and returns the JSON report and the
// output.
func runLoadtest(t *testing.T, args ...string) (loadtest.Report, *syncBuffer) {
	t.Helper()
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	out := &syncBuffer{}
	args = append([]string{"loadtest", "--cluster", "dev", "--latency-scale", "0.1", "--json", jsonFile}, args...)
	code := run(context.Background(), args, streams{in: strings.NewReader(""), out: out, err: out}, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	data, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return rep, out
}

// TestLoadtestRegionPartition runs the region-partition scenario: ap-south
// (coordinator n3, an edge, two backends) is cut off from the other regions
// a third of the way in and healed at two thirds. No replay is accepted,
// every plain request succeeds in every region (the ap-south edge serves
// tenant-1 from its snapshot to its local backends), and the report records
// the partition and the heal.
func TestLoadtestRegionPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dev cluster")
	}
	rep, out := runLoadtest(t, "--scenario", "region-partition", "--duration", "6s", "--rate", "150")
	if rep.Scenario != "region-partition" || !rep.OK || len(rep.Regions) != 3 {
		t.Fatalf("report header: scenario %q ok %v regions %d\n%s", rep.Scenario, rep.OK, len(rep.Regions), out)
	}
	if rep.Replays.Accepted != 0 {
		t.Errorf("replays %+v: want none accepted", rep.Replays)
	}
	for _, rr := range rep.Regions {
		for _, k := range rr.Kinds {
			if k.Kind == loadtest.KindPlain && (k.Requests == 0 || k.OK != k.Requests) {
				t.Errorf("%s: plain requests %d, ok %d, errors %v: want every plain request served through the partition", rr.Region, k.Requests, k.OK, k.Errors)
			}
			// Cut off from every coordinator, the ap-south edge cannot
			// check nonces: its signed requests are refused as unavailable.
			if rr.Region == "ap-south" && k.Kind == loadtest.KindSigned && k.Errors["5xx:503"] == 0 {
				t.Errorf("ap-south signed requests: errors %v, want some 503 while partitioned", k.Errors)
			}
		}
	}
	var cut, healed bool
	for _, e := range rep.Events {
		if e.Error != "" {
			t.Errorf("event %+v failed", e)
		}
		cut = cut || (e.Action == "partition-region" && strings.HasPrefix(e.Detail, "ap-south") && e.AtS >= 1.5 && e.AtS < 3)
		healed = healed || (e.Action == "heal-partition" && e.AtS >= 3.5)
	}
	if !cut || !healed {
		t.Errorf("events %+v: want ap-south partitioned at about 2s and healed at about 4s", rep.Events)
	}
}

// TestLoadtestUsage: a bad command line is refused with exit status 2,
// naming the flag, before any cluster starts.
func TestLoadtestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"loadtest"}, "give a target"},
		{[]string{"loadtest", "--cluster", "prod"}, `--cluster "prod"`},
		{[]string{"loadtest", "--edges", "us-east=localhost:1"}, "--edges"},
		{[]string{"loadtest", "--cluster", "dev", "--rate", "fast"}, "--rate"},
		{[]string{"loadtest", "--cluster", "dev", "--scenario", "nope"}, "no such built-in scenario"},
		{[]string{"loadtest", "--edges", "us-east=http://127.0.0.1:1", "--scenario", "leader-kill", "--mix", "plain=1"}, "--cluster dev"},
		{[]string{"loadtest", "--edges", "us-east=http://127.0.0.1:1", "--mix", "plain=1,jwt=1", "--jwt-key", "k"}, "--jwt-token"},
		{[]string{"loadtest", "--cluster", "dev", "--mix", "plain=1,bogus=1"}, `unknown request kind "bogus"`},
	} {
		r := cliWith(t, adminEnv("127.0.0.1:1", testFiles(t, testAdmin)), "", tc.args...)
		if r.code != 2 || !strings.Contains(r.err, tc.want) {
			t.Errorf("%v: exit %d, output %q; want 2 and %q", tc.args, r.code, r.err, tc.want)
		}
	}
}
