package loadtest

import (
	"strings"
	"testing"
	"time"
)

func TestParseScenario(t *testing.T) {
	p, err := ParseScenario(strings.NewReader(`
name: mine
duration: 30s
rate: {us-east: 2000, eu-west: 500}
mix: {plain: 70, signed: 25, replay: 5}
steps:
  - {at: 33%, action: kill-leader}
  - {at: 20s, action: restart-coordinators}
  - {at: 5s, action: churn-placements, per_second: 50, until: 90%}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "mine" || p.Duration != 30*time.Second || p.Rates["us-east"] != 2000 || p.Rates["eu-west"] != 500 || p.Mix[KindReplay] != 5 {
		t.Fatalf("plan %+v", p)
	}
	if got := p.Steps[0].At.Resolve(p.Duration); got != 9900*time.Millisecond {
		t.Errorf("33%% of 30s = %s, want 9.9s", got)
	}
	if got := p.Steps[1].At.Resolve(p.Duration); got != 20*time.Second {
		t.Errorf("at 20s resolved to %s", got)
	}
	if p.Steps[2].PerSecond != 50 || p.Steps[2].Until.Resolve(p.Duration) != 27*time.Second {
		t.Errorf("churn step %+v", p.Steps[2])
	}

	total, err := ParseScenario(strings.NewReader("rate: 3000\n"))
	if err != nil || total.TotalRate != 3000 || total.Name != "custom" {
		t.Errorf("rate: 3000 -> %+v, %v", total, err)
	}
}

// TestParseScenarioRefusals: each error names the offending field.
func TestParseScenarioRefusals(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", "empty file"},
		{"duraton: 5s\n", "duraton"},
		{"duration: fast\n", "duration"},
		{"rate: -5\n", "rate"},
		{"rate: {us-east: 0}\n", "rate us-east=0"},
		{"mix: {plain: 1, oauth: 1}\n", `unknown request kind "oauth"`},
		{"mix: {plain: 0}\n", "every weight is 0"},
		{"steps: [{at: 1s, action: explode}]\n", `steps[0].action: unknown action "explode"`},
		{"steps: [{at: 1s, action: kill-edge}]\n", "steps[0].region"},
		{"steps: [{at: 150%, action: kill-leader}]\n", "150%"},
	} {
		_, err := ParseScenario(strings.NewReader(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	rates, total, err := ParseRates("us-east=2000,eu-west=500")
	if err != nil || total != 0 || rates["us-east"] != 2000 || rates["eu-west"] != 500 {
		t.Errorf("rates %v %v %v", rates, total, err)
	}
	if _, total, err := ParseRates("300"); err != nil || total != 300 {
		t.Errorf("total %v %v", total, err)
	}
	if _, _, err := ParseRates("us-east=x"); err == nil || !strings.Contains(err.Error(), "us-east=x") {
		t.Errorf("bad rate: %v", err)
	}
	if m, err := ParseMix("plain=70,signed=25,replay=5"); err != nil || m[KindSigned] != 25 {
		t.Errorf("mix %v %v", m, err)
	}
	if _, err := ParseMix("plain"); err == nil || !strings.Contains(err.Error(), "--mix") {
		t.Errorf("bad mix: %v", err)
	}
	if _, err := ParseEdges("us-east=127.0.0.1:8081"); err == nil || !strings.Contains(err.Error(), "us-east=127.0.0.1:8081") {
		t.Errorf("edge without scheme: %v", err)
	}
	if _, err := Builtin("nope"); err == nil || !strings.Contains(err.Error(), "leader-kill") {
		t.Errorf("unknown built-in: %v", err)
	}
	for _, name := range BuiltinNames() {
		if _, err := Builtin(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMixTableInterleaves: the kinds are spread over the cycle in their
// proportions.
func TestMixTableInterleaves(t *testing.T) {
	table := mixTable(Mix{KindPlain: 70, KindSigned: 25, KindReplay: 5})
	count := map[Kind]int{}
	run, longest := 0, 0
	for i, k := range table {
		count[k]++
		if i > 0 && k == table[i-1] {
			run++
		} else {
			run = 1
		}
		longest = max(longest, run)
	}
	if len(table) != 100 || count[KindPlain] != 70 || count[KindSigned] != 25 || count[KindReplay] != 5 {
		t.Fatalf("counts %v over %d", count, len(table))
	}
	if longest > 3 {
		t.Errorf("%d of one kind in a row; want them interleaved", longest)
	}
}
