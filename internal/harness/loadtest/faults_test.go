package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// TestUnknownActionListsEveryFault: the refusal of an unknown action lists
// the fault table, in the words and order users have always seen.
func TestUnknownActionListsEveryFault(t *testing.T) {
	_, err := ParseScenario(strings.NewReader("steps: [{at: 1s, action: explode}]\n"))
	want := `steps[0].action: unknown action "explode" (want kill-leader, restart-coordinators, stop-backends, start-backends, kill-edge, partition-region, heal-partition or churn-placements)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	for _, f := range faults() {
		if got, ok := faultFor(f.action()); !ok || got.action() != f.action() {
			t.Errorf("faultFor(%q) = %v, %v", f.action(), got, ok)
		}
	}
}

// TestFaultsThatNeedARegion: the steps that act on one region are refused
// without it, naming the field; the others need none.
func TestFaultsThatNeedARegion(t *testing.T) {
	needs := map[Action]bool{ActionStopBackends: true, ActionStartBackends: true, ActionKillEdge: true, ActionPartitionRegion: true}
	for _, f := range faults() {
		_, err := ParseScenario(strings.NewReader(fmt.Sprintf("steps: [{at: 1s, action: %s}]\n", f.action())))
		want := fmt.Sprintf("steps[0].region: %s needs a region", f.action())
		switch {
		case needs[f.action()] && (err == nil || err.Error() != want):
			t.Errorf("%s without a region: err = %v, want %q", f.action(), err, want)
		case !needs[f.action()] && err != nil:
			t.Errorf("%s without a region: %v", f.action(), err)
		}
	}
}

// TestFaultsRefusedByTarget: a step the target cannot run is refused before
// the run, naming the step and what to give instead.
func TestFaultsRefusedByTarget(t *testing.T) {
	edges := map[string]string{"us-east": "http://127.0.0.1:1"}
	noNetwork := &fakeController{}
	network := &fakePartitioner{fakeController: noNetwork}
	for _, tc := range []struct {
		step   Step
		target Target
		want   string // "" when admitted
	}{
		{Step{Action: ActionKillLeader}, Target{}, "steps[0]: kill-leader needs control of the cluster's processes: run with --cluster dev"},
		{Step{Action: ActionRestartCoordinators}, Target{}, "steps[0]: restart-coordinators needs control of the cluster's processes: run with --cluster dev"},
		{Step{Action: ActionStopBackends, Region: "us-east"}, Target{}, "steps[0]: stop-backends needs control of the cluster's processes: run with --cluster dev"},
		{Step{Action: ActionStartBackends, Region: "us-east"}, Target{}, "steps[0]: start-backends needs control of the cluster's processes: run with --cluster dev"},
		{Step{Action: ActionKillEdge, Region: "us-east"}, Target{}, "steps[0]: kill-edge needs control of the cluster's processes: run with --cluster dev"},
		{Step{Action: ActionPartitionRegion, Region: "us-east"}, Target{}, "steps[0]: partition-region needs control of the cluster's processes: run with --cluster dev"},
		{Step{Action: ActionHealPartition}, Target{}, "steps[0]: heal-partition needs control of the cluster's processes: run with --cluster dev"},
		{Step{Action: ActionPartitionRegion, Region: "us-east"}, Target{Controller: noNetwork}, "steps[0]: partition-region needs the dev cluster's simulated network: run with --cluster dev --simulate-latency"},
		{Step{Action: ActionHealPartition}, Target{Controller: noNetwork}, "steps[0]: heal-partition needs the dev cluster's simulated network: run with --cluster dev --simulate-latency"},
		{Step{Action: ActionChurnPlacements}, Target{Controller: network}, "steps[0]: churn-placements needs the admin API: give --addr"},
		{Step{Action: ActionKillEdge, Region: "eu-west"}, Target{Controller: noNetwork}, `steps[0].region: unknown region "eu-west" (regions: [us-east])`},
		{Step{Action: ActionKillLeader}, Target{Controller: noNetwork}, ""},
		{Step{Action: ActionHealPartition}, Target{Controller: network}, ""},
		{Step{Action: ActionChurnPlacements}, Target{Admin: pb.NewAdminServiceClient(nil)}, ""},
	} {
		tc.target.Edges = edges
		plan := Plan{Duration: time.Second, TotalRate: 1, Mix: Mix{KindPlain: 1}, Steps: []Step{tc.step}}
		r, err := newRunner(Options{Plan: plan, Target: tc.target})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it admitted", tc.step.Action, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%s: err = %v\nwant %s", tc.step.Action, err, tc.want)
		case tc.step.Action == ActionChurnPlacements && err == nil && r.churn == nil:
			t.Errorf("churn-placements admitted without its lost-write check")
		}
	}
}

// TestFaultsInject: each process and partition step calls its Controller
// once and records one event, stamped when it started, with the detail and
// error an operator reads in the report.
func TestFaultsInject(t *testing.T) {
	failed := errors.New("no such thing")
	for _, tc := range []struct {
		step      Step
		err       error
		call      string
		wantEvent Event
	}{
		{Step{Action: ActionKillLeader}, nil, "KillLeader", Event{Action: "kill-leader", Detail: "n1"}},
		{Step{Action: ActionKillLeader}, failed, "KillLeader", Event{Action: "kill-leader", Error: failed.Error()}},
		{Step{Action: ActionRestartCoordinators}, nil, "RestartCoordinators", Event{Action: "restart-coordinators", Detail: "n1,n2"}},
		{Step{Action: ActionStopBackends, Region: "eu-west"}, nil, "StopBackends eu-west", Event{Action: "stop-backends", Detail: "eu-west"}},
		{Step{Action: ActionStartBackends, Region: "eu-west"}, failed, "StartBackends eu-west", Event{Action: "start-backends", Detail: "eu-west", Error: failed.Error()}},
		{Step{Action: ActionKillEdge, Region: "us-east"}, nil, "KillEdge us-east", Event{Action: "kill-edge", Detail: "us-east"}},
		{Step{Action: ActionPartitionRegion, Region: "ap-south"}, nil, "PartitionRegion ap-south", Event{Action: "partition-region", Detail: "ap-south (3 connections cut)"}},
		{Step{Action: ActionHealPartition}, nil, "HealPartitions", Event{Action: "heal-partition"}},
	} {
		ctl := &fakePartitioner{fakeController: &fakeController{err: tc.err}}
		r := &runner{target: Target{Controller: ctl}, plan: Plan{Duration: time.Second}, start: time.Now(), log: slog.New(slog.DiscardHandler)}
		r.runStep(context.Background(), tc.step)
		if got := strings.Join(ctl.calls, "; "); got != tc.call {
			t.Errorf("%s: calls %q, want %q", tc.step.Action, got, tc.call)
		}
		if len(r.events) != 1 {
			t.Fatalf("%s: events %+v, want one", tc.step.Action, r.events)
		}
		got := r.events[0]
		if got.AtS < 0 || got.AtS > 1 {
			t.Errorf("%s: event at %.3fs, want when the step started", tc.step.Action, got.AtS)
		}
		got.AtS = 0
		if got != tc.wantEvent {
			t.Errorf("%s: event %+v, want %+v", tc.step.Action, got, tc.wantEvent)
		}
	}
}

// fakeController records the calls fault steps make and fails them all
// with err when it is set.
type fakeController struct {
	err   error
	calls []string
}

func (f *fakeController) call(s string) error { f.calls = append(f.calls, s); return f.err }

func (f *fakeController) KillLeader(context.Context) (string, error) {
	if err := f.call("KillLeader"); err != nil {
		return "", err
	}
	return "n1", nil
}

func (f *fakeController) RestartCoordinators(context.Context) ([]string, error) {
	return []string{"n1", "n2"}, f.call("RestartCoordinators")
}

func (f *fakeController) StopBackends(region string) error {
	return f.call("StopBackends " + region)
}

func (f *fakeController) StartBackends(region string) error {
	return f.call("StartBackends " + region)
}

func (f *fakeController) KillEdge(region string) error { return f.call("KillEdge " + region) }

func (f *fakeController) AppliedRevision() uint64 { return 0 }

func (f *fakeController) WaitEdges(context.Context, uint64) error { return nil }

// fakePartitioner is a fakeController that can also cut regions apart.
type fakePartitioner struct{ *fakeController }

func (f *fakePartitioner) PartitionRegion(region string) (int, error) {
	return 3, f.call("PartitionRegion " + region)
}

func (f *fakePartitioner) HealPartitions() error { return f.call("HealPartitions") }
