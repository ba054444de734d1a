package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgecell/edgecell/internal/loadtest"
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
	dir := t.TempDir()
	jsonFile, htmlFile := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	out := &syncBuffer{}
	code := run(context.Background(), []string{"loadtest", "--cluster", "dev", "--scenario", "leader-kill",
		"--duration", "6s", "--rate", "200", "--latency-scale", "0.1", "--json", jsonFile, "--html", htmlFile},
		streams{in: strings.NewReader(""), out: out, err: out}, func(string) string { return "" })
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
	if rep.Schema != loadtest.SchemaVersion || rep.Scenario != "leader-kill" || !rep.OK || len(rep.Regions) != 3 {
		t.Fatalf("report header: schema %q scenario %q ok %v regions %d", rep.Schema, rep.Scenario, rep.OK, len(rep.Regions))
	}
	if rep.Replays.Accepted != 0 || rep.Replays.Blocked == 0 {
		t.Errorf("replays %+v: want some blocked and none accepted", rep.Replays)
	}
	for _, rr := range rep.Regions {
		if rr.Total.Requests == 0 || rr.Total.Latency.P50 <= 0 || rr.Total.Latency.P50 > rr.Total.Latency.P99 || len(rr.Timeline) == 0 {
			t.Errorf("%s: total %+v, %d timeline points", rr.Region, rr.Total, len(rr.Timeline))
		}
		for _, k := range rr.Kinds {
			if k.Kind == loadtest.KindPlain && (k.Requests == 0 || k.OK != k.Requests) {
				t.Errorf("%s: plain requests %d, ok %d, errors %v: want every plain request served while the leader is down", rr.Region, k.Requests, k.OK, k.Errors)
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
	} {
		out := &syncBuffer{}
		code := run(context.Background(), tc.args, streams{in: strings.NewReader(""), out: out, err: out}, func(string) string { return "" })
		if code != 2 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: exit %d, output %q; want 2 and %q", tc.args, code, out, tc.want)
		}
	}
}
