package state

import (
	"strings"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestApplyConfigRefusesInvalidInput(t *testing.T) {
	ep := func(cfg *pb.RoutingConfig) *pb.Endpoint { return cfg.Cells[0].Endpoints[0] }
	tests := []struct {
		name  string
		edit  func(*pb.RoutingConfig)
		field string
		msg   string // substring the user must see
	}{
		{"region uppercase", func(c *pb.RoutingConfig) { c.Regions[0].Name = "US-East" }, "regions[0].name", `"US-East" is invalid`},
		{"region trailing dash", func(c *pb.RoutingConfig) { c.Regions[1].Name = "eu-" }, "regions[1].name", "lowercase letters"},
		{"region too long", func(c *pb.RoutingConfig) { c.Regions[2].Name = strings.Repeat("a", 64) }, "regions[2].name", "at most 63"},
		{"region empty", func(c *pb.RoutingConfig) { c.Regions[0].Name = "" }, "regions[0].name", "required"},
		{"region duplicate", func(c *pb.RoutingConfig) { c.Regions[2].Name = "us-east" }, "regions[2].name", "also regions[0]"},
		{"latency unknown from", func(c *pb.RoutingConfig) { c.Latencies[0].From = "mars" }, "latencies[0].from", `"mars" is not configured; configured regions: ap-south, eu-west, us-east`},
		{"latency unknown to", func(c *pb.RoutingConfig) { c.Latencies[1].To = "moon" }, "latencies[1].to", `"moon"`},
		{"latency to itself", func(c *pb.RoutingConfig) { c.Latencies[0].To = "us-east" }, "latencies[0].to", "to itself"},
		{"latency duplicate direction", func(c *pb.RoutingConfig) {
			c.Latencies = append(c.Latencies, &pb.Latency{From: "us-east", To: "eu-west", OneWayMs: 1})
		}, "latencies[2]", "also latencies[0]"},
		{"cell id bad start", func(c *pb.RoutingConfig) { c.Cells[0].Id = "-c1" }, "cells[0].id", `"-c1" is invalid`},
		{"cell id space", func(c *pb.RoutingConfig) { c.Cells[2].Id = "a b" }, "cells[2].id", "letters, digits"},
		{"cell id too long", func(c *pb.RoutingConfig) { c.Cells[2].Id = strings.Repeat("c", 129) }, "cells[2].id", "at most 128"},
		{"cell id empty", func(c *pb.RoutingConfig) { c.Cells[2].Id = "" }, "cells[2].id", "required"},
		{"cell id duplicate", func(c *pb.RoutingConfig) { c.Cells[2].Id = "c1" }, "cells[2].id", "also cells[0]"},
		{"endpoint id invalid", func(c *pb.RoutingConfig) { ep(c).Id = "x/y" }, "cells[0].endpoints[0].id", `"x/y"`},
		{"endpoint id duplicate in cell", func(c *pb.RoutingConfig) { c.Cells[0].Endpoints[1].Id = "c1-use" }, "cells[0].endpoints[1].id", "also endpoints[0] of the same cell"},
		{"endpoint id duplicate across cells", func(c *pb.RoutingConfig) { c.Cells[1].Endpoints[0].Id = "c1-euw" }, "cells[1].endpoints[0].id", "also cells[0].endpoints[1]"},
		{"url empty", func(c *pb.RoutingConfig) { ep(c).Url = "" }, "cells[0].endpoints[0].url", "required"},
		{"url scheme", func(c *pb.RoutingConfig) { ep(c).Url = "ftp://host/x" }, "cells[0].endpoints[0].url", "http:// or https://"},
		{"url relative", func(c *pb.RoutingConfig) { ep(c).Url = "/relative" }, "cells[0].endpoints[0].url", "http:// or https://"},
		{"url no host", func(c *pb.RoutingConfig) { ep(c).Url = "http://" }, "cells[0].endpoints[0].url", "no host"},
		{"url port only", func(c *pb.RoutingConfig) { ep(c).Url = "http://:8080" }, "cells[0].endpoints[0].url", "no host"},
		{"url opaque", func(c *pb.RoutingConfig) { ep(c).Url = "http:host" }, "cells[0].endpoints[0].url", "no host"},
		{"url query", func(c *pb.RoutingConfig) { ep(c).Url = "http://h/p?x=1" }, "cells[0].endpoints[0].url", "query"},
		{"url empty query", func(c *pb.RoutingConfig) { ep(c).Url = "http://h/p?" }, "cells[0].endpoints[0].url", "query"},
		{"url fragment", func(c *pb.RoutingConfig) { ep(c).Url = "http://h/p#top" }, "cells[0].endpoints[0].url", "fragment"},
		{"url userinfo", func(c *pb.RoutingConfig) { ep(c).Url = "http://user:pw@h/" }, "cells[0].endpoints[0].url", "user information"},
		{"url unparsable", func(c *pb.RoutingConfig) { ep(c).Url = "http://h:port/" }, "cells[0].endpoints[0].url", "invalid"},
		{"endpoint region unknown", func(c *pb.RoutingConfig) { c.Cells[1].Endpoints[0].Region = "mars" }, "cells[1].endpoints[0].region", `"mars" is not configured`},
		{"endpoint region invalid", func(c *pb.RoutingConfig) { ep(c).Region = "Us_East" }, "cells[0].endpoints[0].region", "lowercase"},
		{"endpoint region empty", func(c *pb.RoutingConfig) { ep(c).Region = "" }, "cells[0].endpoints[0].region", "required"},
		{"weight too large", func(c *pb.RoutingConfig) { ep(c).Weight = 10001 }, "cells[0].endpoints[0].weight", "0..10000"},
		{"placement key empty", func(c *pb.RoutingConfig) { c.Placements[0].Key = "" }, "placements[0].key", "required"},
		{"placement key too long", func(c *pb.RoutingConfig) { c.Placements[1].Key = strings.Repeat("k", 257) }, "placements[1].key", "257 bytes"},
		{"placement key space", func(c *pb.RoutingConfig) { c.Placements[0].Key = "a b" }, "placements[0].key", "printable ASCII without spaces"},
		{"placement key non-ascii", func(c *pb.RoutingConfig) { c.Placements[0].Key = "café" }, "placements[0].key", "printable ASCII"},
		{"placement key control", func(c *pb.RoutingConfig) { c.Placements[0].Key = "a\x00b" }, "placements[0].key", "offset 1"},
		{"placement key duplicate", func(c *pb.RoutingConfig) { c.Placements[1].Key = "tenant-a" }, "placements[1].key", "also placements[0]"},
		{"placement cell missing", func(c *pb.RoutingConfig) { c.Placements[1].Cell = "c9" }, "placements[1].cell", `"c9", which is not in the config`},
		{"placement cell empty", func(c *pb.RoutingConfig) { c.Placements[0].Cell = "" }, "placements[0].cell", "required"},
		{"default cell missing", func(c *pb.RoutingConfig) { c.DefaultCell = "c9" }, "default_cell", `"c9" is not a cell`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			tc.edit(cfg)
			if e := ValidateConfig(cfg); e.GetField() != tc.field {
				t.Fatalf("ValidateConfig: field %q (%v); want %q", e.GetField(), e, tc.field)
			}
			s := configured(t)
			e := mustRefuse(t, s, 11, applyConfigCmd(cfg), pb.CommandError_CODE_INVALID_ARGUMENT, tc.field)
			if !strings.Contains(e.GetMessage(), tc.msg) {
				t.Fatalf("message %q does not contain %q", e.GetMessage(), tc.msg)
			}
		})
	}
}

func TestApplyConfigRefusesMissingConfig(t *testing.T) {
	s := configured(t)
	mustRefuse(t, s, 11, applyConfigCmd(nil), pb.CommandError_CODE_INVALID_ARGUMENT, "config")
	mustRefuse(t, s, 12, &pb.Command{Op: &pb.Command_ApplyConfig{}}, pb.CommandError_CODE_INVALID_ARGUMENT, "config")
}

func TestApplyConfigAcceptsLimits(t *testing.T) {
	cfg := baseConfig()
	long := strings.Repeat("r", 63)
	cfg.Regions = append(cfg.Regions, &pb.Region{Name: long}, &pb.Region{Name: "a"}, &pb.Region{Name: "1-2"})
	cfg.Latencies = append(cfg.Latencies, &pb.Latency{From: "eu-west", To: "us-east", OneWayMs: 41}) // the reverse direction is distinct
	cfg.Cells = append(cfg.Cells, &pb.Cell{Id: strings.Repeat("C", 128), Endpoints: []*pb.Endpoint{
		{Id: "A.b_c-9", Url: "https://host.example:8443/base/path", Region: long, Weight: 10000},
		{Id: "zero-weight", Url: "HTTP://Host.Example", Region: "a"},
	}})
	cfg.Placements = append(cfg.Placements,
		&pb.Placement{Key: strings.Repeat("k", 256), Cell: "spare"},
		&pb.Placement{Key: "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", Cell: "c2"})
	if e := ValidateConfig(cfg); e != nil {
		t.Fatalf("ValidateConfig refused a config at the limits: %v", e)
	}
	mustChange(t, New(), 1, applyConfigCmd(cfg))
	empty := &pb.RoutingConfig{}
	if e := ValidateConfig(empty); e != nil {
		t.Fatalf("ValidateConfig refused the empty config: %v", e)
	}
}

func TestValidateMember(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*pb.Member)
		field string
	}{
		{"valid", func(*pb.Member) {}, ""},
		{"region outside the routing config", func(m *pb.Member) { m.Region = "sa-east" }, ""},
		{"hostname addr", func(m *pb.Member) { m.GrpcAddr = "coord-1.internal:7101" }, ""},
		{"ipv6 addr", func(m *pb.Member) { m.RaftAddr = "[::1]:7001" }, ""},
		{"name empty", func(m *pb.Member) { m.Name = "" }, "member.name"},
		{"name invalid", func(m *pb.Member) { m.Name = "n 1" }, "member.name"},
		{"region invalid", func(m *pb.Member) { m.Region = "EU" }, "member.region"},
		{"region empty", func(m *pb.Member) { m.Region = "" }, "member.region"},
		{"raft addr no port", func(m *pb.Member) { m.RaftAddr = "127.0.0.1" }, "member.raft_addr"},
		{"raft addr no host", func(m *pb.Member) { m.RaftAddr = ":7001" }, "member.raft_addr"},
		{"raft addr empty", func(m *pb.Member) { m.RaftAddr = "" }, "member.raft_addr"},
		{"grpc addr bad port", func(m *pb.Member) { m.GrpcAddr = "h:http" }, "member.grpc_addr"},
		{"grpc addr port zero", func(m *pb.Member) { m.GrpcAddr = "h:0" }, "member.grpc_addr"},
		{"grpc addr port too large", func(m *pb.Member) { m.GrpcAddr = "h:65536" }, "member.grpc_addr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := member("n1", "us-east")
			tc.edit(m)
			if e := ValidateMember(m); e.GetField() != tc.field {
				t.Fatalf("ValidateMember: %v; want field %q", e, tc.field)
			}
			s := New()
			if tc.field == "" {
				mustChange(t, s, 1, putMemberCmd(m))
				return
			}
			mustRefuse(t, s, 1, putMemberCmd(m), pb.CommandError_CODE_INVALID_ARGUMENT, tc.field)
		})
	}
	mustRefuse(t, New(), 1, putMemberCmd(nil), pb.CommandError_CODE_INVALID_ARGUMENT, "member")
}
