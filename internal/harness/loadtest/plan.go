package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Kind is a kind of request the load generator sends.
type Kind string

// The request kinds; see the package comment.
const (
	KindPlain  Kind = "plain"
	KindSigned Kind = "signed"
	KindJWT    Kind = "jwt"
	KindReplay Kind = "replay"
)

// Kinds are the request kinds in report order.
var Kinds = []Kind{KindPlain, KindSigned, KindJWT, KindReplay}

// Mix is the relative weight of each request kind; weights are integers,
// for example plain=70,signed=25,replay=5.
type Mix map[Kind]int

// DefaultMix is the mix when neither the scenario nor --mix gives one.
func DefaultMix() Mix { return Mix{KindPlain: 70, KindSigned: 25, KindReplay: 5} }

// Action is a fault step's action.
type Action string

// The fault step actions.
const (
	// ActionKillLeader kills the coordinator leader (dev cluster).
	ActionKillLeader Action = "kill-leader"
	// ActionRestartCoordinators restarts every coordinator killed so far (dev cluster).
	ActionRestartCoordinators Action = "restart-coordinators"
	// ActionStopBackends stops every demo backend of Region (dev cluster).
	ActionStopBackends Action = "stop-backends"
	// ActionStartBackends starts the demo backends of Region again (dev cluster).
	ActionStartBackends Action = "start-backends"
	// ActionKillEdge closes the edge of Region for the rest of the run (dev cluster).
	ActionKillEdge Action = "kill-edge"
	// ActionPartitionRegion cuts Region off from every other region (dev
	// cluster with latency simulation): its coordinator, edge and backends
	// reach nothing outside it, and nothing outside reaches them. Load-test
	// clients are not cut: each still reaches its own region's edge.
	ActionPartitionRegion Action = "partition-region"
	// ActionHealPartition ends every partition (dev cluster with latency
	// simulation).
	ActionHealPartition Action = "heal-partition"
	// ActionChurnPlacements rewrites placements PerSecond times a second until
	// Until, through the admin API.
	ActionChurnPlacements Action = "churn-placements"
)

// Offset is a time within a run: an absolute duration from the start, or a
// fraction of the run's duration (written "33%" in YAML), so that built-in
// scenarios scale with --duration.
type Offset struct {
	At       time.Duration
	Fraction float64 // used when > 0
}

// Resolve is the offset within a run of duration d.
func (o Offset) Resolve(d time.Duration) time.Duration {
	if o.Fraction > 0 {
		return time.Duration(float64(d) * o.Fraction)
	}
	return o.At
}

// UnmarshalYAML accepts "10s" or "33%".
func (o *Offset) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := parseOffset(s)
	if err != nil {
		return err
	}
	*o = v
	return nil
}

func parseOffset(s string) (Offset, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 || f > 100 {
			return Offset{}, fmt.Errorf("%q: want a percentage of the duration between 0%% and 100%%", s)
		}
		if f == 0 {
			return Offset{}, nil
		}
		return Offset{Fraction: f / 100}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return Offset{}, fmt.Errorf("%q: want a duration (10s) or a percentage of the run (33%%)", s)
	}
	return Offset{At: d}, nil
}

// Step is one timed fault step of a scenario.
type Step struct {
	At     Offset `yaml:"at"`
	Action Action `yaml:"action"`
	// Region names the region of stop-backends, start-backends, kill-edge
	// and partition-region.
	Region string `yaml:"region,omitempty"`
	// Until ends churn-placements (default: the end of the run).
	Until *Offset `yaml:"until,omitempty"`
	// PerSecond is churn-placements' write rate (default 20).
	PerSecond int `yaml:"per_second,omitempty"`
}

// Plan is what a run does: how long, how fast from which regions, which
// requests, and which faults when.
type Plan struct {
	Name     string
	Duration time.Duration
	// Rates are requests per second per client region. A single total rate
	// is split evenly over the target's regions: see Target.
	Rates map[string]float64
	// TotalRate, when Rates is empty, is split evenly over the regions.
	TotalRate float64
	Mix       Mix
	Steps     []Step
}

// scenarioFile is the YAML scenario format.
type scenarioFile struct {
	Name     string    `yaml:"name"`
	Duration string    `yaml:"duration"`
	Rate     yaml.Node `yaml:"rate"`
	Mix      Mix       `yaml:"mix"`
	Steps    []Step    `yaml:"steps"`
}

// ParseScenario reads a YAML scenario:
//
//	name: leader-kill-under-load
//	duration: 30s
//	rate: {us-east: 2000, eu-west: 500}   # or a total: rate: 3000
//	mix: {plain: 60, signed: 20, jwt: 15, replay: 5}
//	steps:
//	  - {at: 33%, action: kill-leader}
//	  - {at: 20s, action: restart-coordinators}
//	  - {at: 5s, action: stop-backends, region: eu-west}
//	  - {at: 5s, action: churn-placements, per_second: 50, until: 25s}
//	  - {at: 10s, action: partition-region, region: ap-south}
//	  - {at: 15s, action: heal-partition}
//
// Unknown fields are refused, and every error names the field.
func ParseScenario(r io.Reader) (Plan, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Plan{}, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f scenarioFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return Plan{}, errors.New("scenario: empty file")
		}
		return Plan{}, fmt.Errorf("scenario: %w", err)
	}
	p := Plan{Name: f.Name, Mix: f.Mix, Steps: f.Steps}
	if p.Name == "" {
		p.Name = "custom"
	}
	if f.Duration != "" {
		if p.Duration, err = time.ParseDuration(f.Duration); err != nil || p.Duration <= 0 {
			return Plan{}, fmt.Errorf("scenario: duration %q: want a positive duration such as 30s", f.Duration)
		}
	}
	switch f.Rate.Kind {
	case 0:
	case yaml.ScalarNode:
		if p.TotalRate, err = strconv.ParseFloat(f.Rate.Value, 64); err != nil || p.TotalRate <= 0 {
			return Plan{}, fmt.Errorf("scenario: rate %q: want a positive number of requests per second", f.Rate.Value)
		}
	case yaml.MappingNode:
		if err := f.Rate.Decode(&p.Rates); err != nil {
			return Plan{}, fmt.Errorf("scenario: rate: %w", err)
		}
	default:
		return Plan{}, fmt.Errorf("scenario: rate (line %d): want a number or a map of region to rate", f.Rate.Line)
	}
	return p, p.validate()
}

// validate checks what can be checked without a target.
func (p Plan) validate() error {
	for r, v := range p.Rates {
		if v <= 0 {
			return fmt.Errorf("rate %s=%v: want a positive rate", r, v)
		}
	}
	for k, w := range p.Mix {
		if !slices.Contains(Kinds, k) {
			return fmt.Errorf("mix: unknown request kind %q (want plain, signed, jwt or replay)", k)
		}
		if w < 0 {
			return fmt.Errorf("mix %s=%d: want a weight >= 0", k, w)
		}
	}
	if len(p.Mix) > 0 && p.Mix.total() == 0 {
		return errors.New("mix: every weight is 0")
	}
	for i, s := range p.Steps {
		f, ok := faultFor(s.Action)
		if !ok {
			return fmt.Errorf("steps[%d].action: unknown action %q (want %s)", i, s.Action, actionList())
		}
		if err := f.validate(s); err != nil {
			return fmt.Errorf("steps[%d].%w", i, err)
		}
		if s.PerSecond < 0 {
			return fmt.Errorf("steps[%d].per_second: want a positive rate", i)
		}
	}
	return nil
}

func (m Mix) total() int {
	t := 0
	for _, w := range m {
		t += w
	}
	return t
}

// ParseMix parses "plain=60,signed=20,jwt=15,replay=5".
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		w, err := strconv.Atoi(v)
		if !ok || err != nil {
			return nil, fmt.Errorf("--mix %q: want kind=weight,... such as plain=70,signed=25,replay=5", s)
		}
		m[Kind(k)] = w
	}
	return m, Plan{Mix: m}.validate()
}

// ParseRates parses "us-east=2000,eu-west=500" into per-region rates, or
// "3000" into a total (regions nil).
func ParseRates(s string) (regions map[string]float64, total float64, err error) {
	if !strings.Contains(s, "=") {
		total, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || total <= 0 {
			return nil, 0, fmt.Errorf("--rate %q: want a positive total rate or region=rate,...", s)
		}
		return nil, total, nil
	}
	regions = map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		r, err := strconv.ParseFloat(v, 64)
		if k == "" || err != nil || r <= 0 {
			return nil, 0, fmt.Errorf("--rate %q: %q: want region=positive-rate", s, part)
		}
		regions[k] = r
	}
	return regions, 0, nil
}

// ParseEdges parses "us-east=http://127.0.0.1:8081,eu-west=http://...".
func ParseEdges(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" || !(strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://")) {
			return nil, fmt.Errorf("--edges %q: %q: want region=http://host:port", s, part)
		}
		out[k] = strings.TrimRight(v, "/")
	}
	return out, nil
}

// Builtin returns a built-in scenario. Steps are placed at fractions of the
// duration, so they scale with it.
func Builtin(name string) (Plan, error) {
	third, twoThirds := Offset{Fraction: 1.0 / 3}, Offset{Fraction: 2.0 / 3}
	p := Plan{Name: name, Duration: 30 * time.Second}
	switch name {
	case "steady":
	case "leader-kill":
		p.Steps = []Step{{At: third, Action: ActionKillLeader}, {At: twoThirds, Action: ActionRestartCoordinators}}
	case "backend-outage":
		p.Steps = []Step{{At: third, Action: ActionStopBackends, Region: "us-east"}, {At: twoThirds, Action: ActionStartBackends, Region: "us-east"}}
	case "config-churn":
		p.Steps = []Step{{At: Offset{}, Action: ActionChurnPlacements, PerSecond: 20}}
	case "replay-storm":
		p.Mix = Mix{KindPlain: 40, KindSigned: 20, KindReplay: 40}
	case "region-partition":
		p.Steps = []Step{{At: third, Action: ActionPartitionRegion, Region: "ap-south"}, {At: twoThirds, Action: ActionHealPartition}}
	case "edge-kill":
		p.Steps = []Step{{At: third, Action: ActionKillEdge, Region: "us-east"}}
	default:
		return Plan{}, fmt.Errorf("--scenario %q: no such built-in scenario (have %s) and no such file", name, strings.Join(BuiltinNames(), ", "))
	}
	return p, nil
}

// BuiltinNames are the built-in scenarios.
func BuiltinNames() []string {
	names := []string{"steady", "leader-kill", "backend-outage", "config-churn", "replay-storm", "edge-kill", "region-partition"}
	sort.Strings(names)
	return names
}
