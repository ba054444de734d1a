package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func loadExample(t *testing.T) *pb.RoutingConfig {
	t.Helper()
	f, err := os.Open("../../deploy/routing.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := Load(f)
	if err != nil {
		t.Fatalf("Load(routing.example.yaml): %v", err)
	}
	return cfg
}

func TestExampleFileLoads(t *testing.T) {
	cfg := loadExample(t)
	var regions []string
	for _, r := range cfg.GetRegions() {
		regions = append(regions, r.GetName())
	}
	if got := strings.Join(regions, ","); got != "us-east,eu-west,ap-south" {
		t.Errorf("regions = %s", got)
	}
	if len(cfg.GetLatencies()) != 3 || cfg.GetLatencies()[0].GetOneWayMs() != 38 {
		t.Errorf("latencies = %v", cfg.GetLatencies())
	}
	if len(cfg.GetCells()) != 2 || len(cfg.GetCells()[0].GetEndpoints()) != 4 {
		t.Fatalf("cells = %v", cfg.GetCells())
	}
	if ep := cfg.GetCells()[0].GetEndpoints()[2]; ep.GetRegion() != "ap-south" || ep.GetWeight() != 3 {
		t.Errorf("cells[0].endpoints[2] = %v", ep)
	}
	if cfg.GetDefaultCell() != "cell-1" {
		t.Errorf("default_cell = %q", cfg.GetDefaultCell())
	}
	if a, b := cfg.GetCells()[0].GetPanicThresholdPercent(), cfg.GetCells()[1].GetPanicThresholdPercent(); a != 0 || b != 50 {
		t.Errorf("panic_threshold_percent = %d, %d; want 0 (absent) and 50", a, b)
	}
	if p := cfg.GetPlacements()[3]; p.GetKey() != "42" {
		t.Errorf("quoted numeric key = %q", p.GetKey())
	}
}

func TestDeployConfigsLoad(t *testing.T) {
	for _, name := range []string{"../../deploy/routing.example.yaml", "../../deploy/compose/routing.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(cfg.GetRegions()) != 3 || len(cfg.GetCells()) != 2 || cfg.GetDefaultCell() == "" {
			t.Errorf("%s: %d regions, %d cells, default cell %q", name, len(cfg.GetRegions()), len(cfg.GetCells()), cfg.GetDefaultCell())
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	cfg := loadExample(t)
	// Revisions as the coordinators stamp them must not leak into the file.
	stamped := proto.CloneOf(cfg)
	stamped.Cells[0].CreateRevision, stamped.Cells[0].ModRevision = 3, 9
	stamped.Placements[0].CreateRevision, stamped.Placements[0].ModRevision = 4, 4

	out, err := Marshal(stamped)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"create_revision", "mod_revision", "createRevision"} {
		if bytes.Contains(out, []byte(absent)) {
			t.Errorf("Marshal output contains %q:\n%s", absent, out)
		}
	}
	for _, present := range []string{"default_cell: cell-1", "one_way_ms: 38", `key: "42"`} {
		if !bytes.Contains(out, []byte(present)) {
			t.Errorf("Marshal output lacks %q:\n%s", present, out)
		}
	}
	js, err := MarshalJSON(stamped)
	if err != nil {
		t.Fatal(err)
	}
	if fromJSON, err := Load(bytes.NewReader(js)); err != nil || !proto.Equal(fromJSON, cfg) || bytes.Contains(js, []byte("revision")) {
		t.Errorf("MarshalJSON does not round-trip (%v):\n%s", err, js)
	}
	if stamped.Cells[0].ModRevision != 9 {
		t.Error("Marshal modified its argument")
	}
	back, err := Load(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("Load(Marshal(cfg)): %v\n%s", err, out)
	}
	if !proto.Equal(back, cfg) {
		t.Errorf("round trip changed the config:\nwant %v\ngot  %v", cfg, back)
	}
	// Field order follows the proto, so the file reads top-down like the example.
	if i, j := bytes.Index(out, []byte("regions:")), bytes.Index(out, []byte("cells:")); i < 0 || j < i {
		t.Errorf("regions should come before cells:\n%s", out)
	}
}

func TestLoadAcceptsJSONAndCamelCase(t *testing.T) {
	doc := `{"regions":[{"name":"us-east"}],"latencies":[{"from":"us-east","to":"us-east","oneWayMs":"1"}],
	"cells":[{"id":"c","endpoints":[{"id":"e","url":"http://x","region":"us-east","weight":2}]}],
	"placements":[{"key":7,"cell":"c"}],"defaultCell":"c"}`
	cfg, err := Load(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GetDefaultCell() != "c" || cfg.GetLatencies()[0].GetOneWayMs() != 1 || cfg.GetPlacements()[0].GetKey() != "7" {
		t.Errorf("got %v", cfg)
	}
}

// TestPanicThresholdField: a cell's panic threshold is read under both
// spellings, printed back by Marshal, and a value that is not a percentage's
// shape is refused naming the field (the coordinators refuse values over 100).
func TestPanicThresholdField(t *testing.T) {
	for _, doc := range []string{
		"cells:\n  - id: c\n    panic_threshold_percent: 30\n",
		"cells:\n  - id: c\n    panicThresholdPercent: \"30\"\n",
	} {
		cfg, err := Load(strings.NewReader(doc))
		if err != nil {
			t.Fatalf("Load(%q): %v", doc, err)
		}
		if got := cfg.GetCells()[0].GetPanicThresholdPercent(); got != 30 {
			t.Fatalf("Load(%q): panic_threshold_percent = %d, want 30", doc, got)
		}
		out, err := Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte("panic_threshold_percent: 30")) {
			t.Errorf("Marshal output lacks the threshold:\n%s", out)
		}
	}
	for _, bad := range []string{"-5", "half", "[50]"} {
		_, err := Load(strings.NewReader("cells:\n  - id: c\n    panic_threshold_percent: " + bad + "\n"))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Line != 3 || !strings.Contains(err.Error(), "cells[0].panic_threshold_percent") {
			t.Errorf("panic_threshold_percent: %s: error %v, want one naming line 3 and the field", bad, err)
		}
	}
}

func TestLoadErrorsNameLineAndField(t *testing.T) {
	tests := []struct {
		name, doc string
		line      int
		want      []string
	}{
		{
			name: "unknown top-level field",
			doc:  "regions:\n  - name: us-east\ndefault: c\n",
			line: 3, want: []string{"default", "unknown field", "default_cell"},
		},
		{
			name: "unknown nested field",
			doc:  "cells:\n  - id: c\n    endpoints:\n      - id: e\n        url: http://x\n      - id: f\n        regoin: us-east\n",
			line: 7, want: []string{"cells[0].endpoints[1].regoin", `unknown field "regoin"`},
		},
		{
			name: "revision fields are not part of a region",
			doc:  "regions:\n  - name: a\n    mod_revision: 3\n",
			line: 3, want: []string{"regions[0].mod_revision"},
		},
		{
			name: "list where a mapping belongs",
			doc:  "cells:\n  - - c\n",
			line: 2, want: []string{"cells[0]", "want a mapping"},
		},
		{
			name: "scalar where a list belongs",
			doc:  "regions: us-east\n",
			line: 1, want: []string{"regions", "want a list"},
		},
		{
			name: "word where a number belongs",
			doc:  "cells:\n  - id: c\n    endpoints:\n      - id: e\n        weight: heavy\n",
			line: 5, want: []string{"cells[0].endpoints[0].weight", `"heavy"`},
		},
		{
			name: "negative unsigned",
			doc:  "latencies:\n  - one_way_ms: -4\n",
			line: 2, want: []string{"latencies[0].one_way_ms"},
		},
		{
			name: "out of range",
			doc:  "latencies:\n  - one_way_ms: 4294967296\n",
			line: 2, want: []string{"larger than 4294967295"},
		},
		{
			name: "field given twice under both spellings",
			doc:  "default_cell: a\ndefaultCell: b\n",
			line: 2, want: []string{"given twice", "line 1"},
		},
		{
			name: "empty document",
			doc:  "# nothing here\n",
			want: []string{"empty"},
		},
		{
			name: "null document",
			doc:  "~\n",
			line: 1, want: []string{"empty"},
		},
		{
			name: "two documents",
			doc:  "default_cell: a\n---\ndefault_cell: b\n",
			line: 2, want: []string{"second document"},
		},
		{
			name: "yaml syntax",
			doc:  "regions:\n  - name: a\n name: b\n",
			want: []string{"line 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.doc))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if tt.line > 0 {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Line != tt.line {
					t.Errorf("error %q: want line %d", err, tt.line)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadFollowsAnchors(t *testing.T) {
	doc := `
cells:
  - id: a
    endpoints: &eps
      - {id: a1, url: "http://x", region: r}
  - id: b
    endpoints: *eps
`
	cfg, err := Load(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.GetCells()[1].GetEndpoints()[0].GetId(); got != "a1" {
		t.Errorf("alias endpoint id = %q", got)
	}
}

func TestEncodeMessage(t *testing.T) {
	msg := &pb.ClusterStatusResponse{
		Leader:   "n1",
		Term:     3,
		Revision: 1 << 40,
		Members: []*pb.MemberStatus{
			{Name: "n1", Role: "leader", Voter: true, AppliedIndex: 12},
			{Name: "n2", Role: "follower"},
		},
	}
	js, err := EncodeMessage(msg, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(js, &generic); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, js)
	}
	members := generic["members"].([]any)
	if second := members[1].(map[string]any); second["voter"] != false || second["applied_index"] != "0" {
		t.Errorf("unset fields must be present with zero values: %v", second)
	}

	ym, err := EncodeMessage(msg, FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ym, []byte("revision: 1099511627776")) || !bytes.Contains(ym, []byte("applied_index: 0")) {
		t.Errorf("-o yaml:\n%s", ym)
	}
	for _, doc := range [][]byte{js, ym} {
		back := &pb.ClusterStatusResponse{}
		if err := Decode(bytes.NewReader(doc), back); err != nil {
			t.Fatalf("Decode: %v\n%s", err, doc)
		}
		if !proto.Equal(back, msg) {
			t.Errorf("decode(encode(m)) = %v, want %v", back, msg)
		}
	}

	enumMsg := &pb.GetConfigRequest{Consistency: pb.Consistency_CONSISTENCY_STALE}
	ye, err := EncodeMessage(enumMsg, FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	if string(ye) != "consistency: CONSISTENCY_STALE\n" {
		t.Errorf("enum as YAML = %q", ye)
	}
	if _, err := EncodeMessage(msg, "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}
