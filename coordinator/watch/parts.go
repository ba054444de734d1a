package watch

import (
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// PartBytes bounds the encoded size of one reset part: a quarter of gRPC's
// default 4 MiB receive limit, whatever the state's size. (A single item
// larger than that, which validation does not let a state hold, would go
// alone in its part.)
const PartBytes = 1 << 20

// cutReset cuts st into the parts of a reset (ResetPart): the first
// carries the revision, cluster id, members and topology, then each part
// takes the cells, placements, keys, breakers and health statuses that fit
// in PartBytes, each list in order. The parts share st's messages (nothing
// is copied): st must not change, which holds for the hub's snapshots.
func cutReset(st *pb.State) []*pb.WatchResponse {
	cfg := st.GetConfig()
	p := &partCutter{cur: &pb.State{
		Revision: st.GetRevision(), ClusterId: st.GetClusterId(), Members: st.GetMembers(),
		Config: &pb.RoutingConfig{Regions: cfg.GetRegions(), Latencies: cfg.GetLatencies(), DefaultCell: cfg.GetDefaultCell()},
	}}
	p.room = PartBytes - proto.Size(p.cur)
	cutList(p, cfg.GetCells(), func(s *pb.State) *[]*pb.Cell { return &s.Config.Cells })
	cutList(p, cfg.GetPlacements(), func(s *pb.State) *[]*pb.Placement { return &s.Config.Placements })
	cutList(p, st.GetKeys(), func(s *pb.State) *[]*pb.ApiKey { return &s.Keys })
	cutList(p, st.GetBreakers(), func(s *pb.State) *[]*pb.BreakerStatus { return &s.Breakers })
	cutList(p, st.GetHealth(), func(s *pb.State) *[]*pb.HealthStatus { return &s.Health })
	p.flush()
	p.parts[len(p.parts)-1].GetResetPart().Last = true
	return p.parts
}

// partCutter collects the parts of a reset.
type partCutter struct {
	parts []*pb.WatchResponse
	cur   *pb.State // the part being filled
	room  int       // bytes left in it
}

func (p *partCutter) flush() {
	p.parts = append(p.parts, &pb.WatchResponse{Kind: &pb.WatchResponse_ResetPart{
		ResetPart: &pb.ResetPart{State: p.cur, Index: uint32(len(p.parts))}}})
	p.cur, p.room = &pb.State{Config: &pb.RoutingConfig{}}, PartBytes
}

// fit makes room for an item of n bytes, starting a new part when the
// current one is not empty and has too little left; it reports whether it
// did.
func (p *partCutter) fit(n int) bool {
	n += 4 // the item's tag and length
	fresh := n > p.room && p.room < PartBytes
	if fresh {
		p.flush()
	}
	p.room -= n
	return fresh
}

// cutList spreads list over the parts from the current one on: each part's
// field is a subslice of list.
func cutList[T proto.Message](p *partCutter, list []T, field func(*pb.State) *[]T) {
	start := 0
	for i, item := range list {
		if p.fit(proto.Size(item)) {
			start = i
		}
		*field(p.cur) = list[start : i+1]
	}
}
