package state

import (
	"fmt"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// ValidateConfig checks a whole routing config on its own, without the
// current state: names and URLs are well formed, ids are unique (endpoint ids
// across all cells), and every reference (latency regions, endpoint regions,
// placement cells, default_cell) resolves inside the config. It returns nil
// when the config is valid, else an INVALID_ARGUMENT error whose field is a
// path such as "cells[2].endpoints[0].region". Apply runs the same checks, so
// the API layer may call it to refuse bad input before proposing it.
func ValidateConfig(cfg *pb.RoutingConfig) *pb.CommandError {
	if cfg == nil {
		return invalid("config", "config is required")
	}
	regions := make(map[string]int, len(cfg.GetRegions()))
	for i, r := range cfg.GetRegions() {
		field := fmt.Sprintf("regions[%d].name", i)
		if e := checkRegionName(field, "region name", r.GetName()); e != nil {
			return e
		}
		if j, dup := regions[r.GetName()]; dup {
			return invalid(field, "duplicate region %q (also regions[%d]); region names are unique", r.GetName(), j)
		}
		regions[r.GetName()] = i
	}
	if e := validateLatencies(cfg.GetLatencies(), regions); e != nil {
		return e
	}
	cells := make(map[string]int, len(cfg.GetCells()))
	type position struct{ cell, endpoint int }
	endpoints := make(map[string]position)
	for i, c := range cfg.GetCells() {
		if e := validateCell(c, regions); e != nil {
			return prefixed(fmt.Sprintf("cells[%d].", i), e)
		}
		if j, dup := cells[c.GetId()]; dup {
			return invalid(fmt.Sprintf("cells[%d].id", i), "duplicate cell id %q (also cells[%d]); cell ids are unique", c.GetId(), j)
		}
		cells[c.GetId()] = i
		for j, ep := range c.GetEndpoints() {
			if other, dup := endpoints[ep.GetId()]; dup {
				return invalid(fmt.Sprintf("cells[%d].endpoints[%d].id", i, j),
					"duplicate endpoint id %q (also cells[%d].endpoints[%d]); endpoint ids are unique across all cells", ep.GetId(), other.cell, other.endpoint)
			}
			endpoints[ep.GetId()] = position{i, j}
		}
	}
	keys := make(map[string]int, len(cfg.GetPlacements()))
	for i, p := range cfg.GetPlacements() {
		if e := validatePlacement(p); e != nil {
			return prefixed(fmt.Sprintf("placements[%d].", i), e)
		}
		if j, dup := keys[p.GetKey()]; dup {
			return invalid(fmt.Sprintf("placements[%d].key", i), "duplicate placement key %q (also placements[%d]); keys are unique", p.GetKey(), j)
		}
		keys[p.GetKey()] = i
		if _, ok := cells[p.GetCell()]; !ok {
			return invalid(fmt.Sprintf("placements[%d].cell", i), "placement %q names cell %q, which is not in the config", p.GetKey(), p.GetCell())
		}
	}
	if d := cfg.GetDefaultCell(); d != "" {
		if _, ok := cells[d]; !ok {
			return invalid("default_cell", "default_cell %q is not a cell of the config; name one of its cells or leave it empty", d)
		}
	}
	return nil
}

func validateLatencies(lats []*pb.Latency, regions map[string]int) *pb.CommandError {
	type direction struct{ from, to string }
	seen := make(map[direction]int, len(lats))
	for i, l := range lats {
		path := fmt.Sprintf("latencies[%d]", i)
		if _, ok := regions[l.GetFrom()]; !ok {
			return unknownRegion(path+".from", "latency region", l.GetFrom(), regions)
		}
		if _, ok := regions[l.GetTo()]; !ok {
			return unknownRegion(path+".to", "latency region", l.GetTo(), regions)
		}
		if l.GetFrom() == l.GetTo() {
			return invalid(path+".to", "latency from region %q to itself; from and to must differ", l.GetFrom())
		}
		d := direction{l.GetFrom(), l.GetTo()}
		if j, dup := seen[d]; dup {
			return invalid(path, "duplicate latency from %q to %q (also latencies[%d]); give each direction once", d.from, d.to, j)
		}
		seen[d] = i
	}
	return nil
}

// validateCell checks one cell on its own: its id, and each endpoint's id,
// URL, region (which must be in regions) and weight. Endpoint ids must be
// unique within the cell; uniqueness across cells is the caller's business.
// Fields are relative to the cell ("endpoints[0].url"): the caller prefixes
// them, so that valid input (the common case) builds no path strings.
func validateCell(c *pb.Cell, regions map[string]int) *pb.CommandError {
	if e := checkID("id", "cell id", c.GetId()); e != nil {
		return e
	}
	var ids map[string]int
	if len(c.GetEndpoints()) > 1 {
		ids = make(map[string]int, len(c.GetEndpoints()))
	}
	for j, ep := range c.GetEndpoints() {
		if e := validateEndpoint(ep, regions); e != nil {
			return prefixed(fmt.Sprintf("endpoints[%d].", j), e)
		}
		if k, dup := ids[ep.GetId()]; dup {
			return invalid(fmt.Sprintf("endpoints[%d].id", j), "duplicate endpoint id %q (also endpoints[%d] of the same cell); endpoint ids are unique across all cells", ep.GetId(), k)
		}
		if ids != nil {
			ids[ep.GetId()] = j
		}
	}
	return validatePolicies(c)
}

func validateEndpoint(ep *pb.Endpoint, regions map[string]int) *pb.CommandError {
	if e := checkID("id", "endpoint id", ep.GetId()); e != nil {
		return e
	}
	if e := checkEndpointURL("url", ep.GetUrl()); e != nil {
		return e
	}
	if e := checkRegionName("region", "endpoint region", ep.GetRegion()); e != nil {
		return e
	}
	if _, ok := regions[ep.GetRegion()]; !ok {
		return unknownRegion("region", "endpoint region", ep.GetRegion(), regions)
	}
	if ep.GetWeight() > MaxWeight {
		return invalid("weight", "weight %d is too large; use 0..%d (0 means 1)", ep.GetWeight(), MaxWeight)
	}
	return nil
}

// validatePlacement checks a placement's syntax (fields "key" and "cell");
// whether its cell exists depends on where it is used.
func validatePlacement(p *pb.Placement) *pb.CommandError {
	if e := checkPlacementKey("key", p.GetKey()); e != nil {
		return e
	}
	return checkID("cell", "placement cell", p.GetCell())
}

// prefixed places a relative field path under prefix ("cells[2]." + "id").
func prefixed(prefix string, e *pb.CommandError) *pb.CommandError {
	e.Field = prefix + e.GetField()
	return e
}

// ValidateMember checks a coordinator member on its own: a name with the id
// charset, raft_addr and grpc_addr as host:port, and a valid region name (a
// member may live in a region the routing config does not list). Fields are
// reported as "member.name" and so on. ops, when given, must be ascending
// field numbers of Command ops (10 and above), at most MaxMemberOps. Apply
// runs the same checks for PutMember.
func ValidateMember(m *pb.Member) *pb.CommandError {
	if m == nil {
		return invalid("member", "member is required")
	}
	if e := checkID("member.name", "member name", m.GetName()); e != nil {
		return e
	}
	if e := checkRegionName("member.region", "member region", m.GetRegion()); e != nil {
		return e
	}
	if e := checkHostPort("member.raft_addr", "raft_addr", m.GetRaftAddr()); e != nil {
		return e
	}
	if e := checkHostPort("member.grpc_addr", "grpc_addr", m.GetGrpcAddr()); e != nil {
		return e
	}
	return checkMemberOps(m.GetOps())
}

// MaxMemberOps bounds the ops a member may advertise.
const MaxMemberOps = 1000

func checkMemberOps(nums []uint32) *pb.CommandError {
	if len(nums) > MaxMemberOps {
		return invalid("member.ops", "%d ops advertised; at most %d", len(nums), MaxMemberOps)
	}
	for i, n := range nums {
		switch {
		case n < firstOpNumber || n > uint32(protowire.MaxValidNumber):
			return invalid(fmt.Sprintf("member.ops[%d]", i), "%d is not the field number of a Command op (%d to %d)", n, firstOpNumber, protowire.MaxValidNumber)
		case i > 0 && n <= nums[i-1]:
			return invalid(fmt.Sprintf("member.ops[%d]", i), "%d follows %d: ops must be ascending, each once", n, nums[i-1])
		}
	}
	return nil
}
