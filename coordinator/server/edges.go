package server

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// edgeRegistry is this member's soft state about the edges watching it: who
// is connected, since when, and what they acknowledged. It is not replicated:
// acks are frequent and only matter while the edge is connected, so ListEdges
// asks every member instead of writing acks through raft.
type edgeRegistry struct {
	member    string
	now       func() time.Time
	retention time.Duration

	mu    sync.Mutex
	edges map[string]*edgeEntry
}

type edgeEntry struct {
	status  *pb.EdgeStatus
	streams int // open watch streams; an edge reconnecting may briefly hold two
}

func newEdgeRegistry(member string, now func() time.Time, retention time.Duration) *edgeRegistry {
	return &edgeRegistry{member: member, now: now, retention: retention, edges: map[string]*edgeEntry{}}
}

func (r *edgeRegistry) entry(name, region string) *edgeEntry {
	e, ok := r.edges[name]
	if !ok {
		e = &edgeEntry{status: &pb.EdgeStatus{Name: name, Coordinator: r.member}}
		r.edges[name] = e
	}
	if region != "" {
		e.status.Region = region
	}
	return e
}

// connected records a watch stream opening and returns the func that records its end.
func (r *edgeRegistry) connected(name, region string, from uint64) func() {
	r.mu.Lock()
	e := r.entry(name, region)
	e.streams++
	e.status.Connected = true
	e.status.ConnectedAtUnixMs = r.now().UnixMilli()
	if from > e.status.AppliedRevision {
		e.status.AppliedRevision = from
	}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		e.streams--
		e.status.Connected = e.streams > 0
		r.mu.Unlock()
	}
}

// isConnected reports whether edge has a watch stream open to this member.
func (r *edgeRegistry) isConnected(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.edges[name]
	return ok && e.status.GetConnected()
}

func (r *edgeRegistry) ack(req *pb.AckRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entry(req.GetEdge(), req.GetRegion())
	if req.GetAppliedRevision() > e.status.AppliedRevision {
		e.status.AppliedRevision = req.GetAppliedRevision()
	}
	if req.GetRejectedRevision() != 0 {
		e.status.RejectedRevision = req.GetRejectedRevision()
		e.status.RejectReason = req.GetRejectReason()
	}
	e.status.LastAckUnixMs = r.now().UnixMilli()
}

// list returns copies of the entries, dropping disconnected ones past retention.
func (r *edgeRegistry) list() []*pb.EdgeStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-r.retention).UnixMilli()
	out := make([]*pb.EdgeStatus, 0, len(r.edges))
	for name, e := range r.edges {
		last := max(e.status.GetLastAckUnixMs(), e.status.GetConnectedAtUnixMs())
		if !e.status.GetConnected() && last < cutoff {
			delete(r.edges, name)
			continue
		}
		out = append(out, proto.Clone(e.status).(*pb.EdgeStatus))
	}
	return out
}

// Watch implements EdgeService: it streams the state to one edge. Slow edges
// only slow their own stream; the hub never waits for them.
func (s *Server) Watch(req *pb.WatchRequest, stream pb.EdgeService_WatchServer) error {
	if req.GetEdge() == "" {
		return invalidArg("edge", "the edge's name is required")
	}
	done := s.edges.connected(req.GetEdge(), req.GetRegion(), req.GetFromRevision())
	defer done()
	s.log.Info("edge watching", "edge", req.GetEdge(), "region", req.GetRegion(), "revision", req.GetFromRevision(), "cluster_id", req.GetClusterId())
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	go func() {
		select {
		case <-s.members.HaltNotify(): // this member's state stopped moving: the edge must follow another
			cancel()
		case <-ctx.Done():
		}
	}()
	err := s.watches.Serve(ctx, req, func(msg *pb.WatchResponse, wire []byte) error {
		if wire != nil {
			return stream.SendMsg(encoded(wire))
		}
		return stream.Send(msg)
	})
	s.log.Info("edge watch ended", "edge", req.GetEdge(), "error", err)
	switch {
	case stream.Context().Err() != nil:
		return nil // the edge went away
	case s.stopping.Err() != nil:
		return status.Error(codes.Unavailable, "coordinator is shutting down; reconnect to another")
	case s.members.Halted() != nil:
		return s.haltedStatus()
	}
	return toStatus(err)
}

// Ack implements EdgeService.
func (s *Server) Ack(_ context.Context, req *pb.AckRequest) (*pb.AckResponse, error) {
	if req.GetEdge() == "" {
		return nil, invalidArg("edge", "the edge's name is required")
	}
	if req.GetRejectedRevision() != 0 {
		s.log.Warn("edge rejected a revision", "edge", req.GetEdge(), "revision", req.GetRejectedRevision(), "reason", req.GetRejectReason())
	}
	s.edges.ack(req)
	return &pb.AckResponse{}, nil
}

// ListEdges implements AdminService. Unless local_only, it asks every other
// member for its edges and merges: an edge listed by several members (it
// moved) is shown where it is connected, else where it acked last.
func (s *Server) ListEdges(ctx context.Context, req *pb.ListEdgesRequest) (*pb.ListEdgesResponse, error) {
	if req.GetLocalOnly() {
		return &pb.ListEdgesResponse{Edges: s.edges.list(), Revision: s.reader.View().Revision()}, nil
	}
	return s.allEdges(ctx), nil
}

// allEdges merges this member's edges with every other member's.
func (s *Server) allEdges(ctx context.Context) *pb.ListEdgesResponse {
	v := s.reader.View()
	resp := &pb.ListEdgesResponse{Edges: s.edges.list(), Revision: v.Revision()}
	type answer struct {
		member string
		resp   *pb.ListEdgesResponse
		err    error
	}
	members := v.Members()
	answers := make(chan answer, len(members))
	asked := 0
	for _, m := range members {
		if m.GetName() == s.members.Name() {
			continue
		}
		asked++
		go func(m *pb.Member) {
			r, err := peerCall(ctx, s, m.GetGrpcAddr(), func(ctx context.Context, c *clients) (*pb.ListEdgesResponse, error) {
				return c.admin.ListEdges(ctx, &pb.ListEdgesRequest{LocalOnly: true})
			})
			answers <- answer{m.GetName(), r, err}
		}(m)
	}
	byName := map[string]*pb.EdgeStatus{}
	for _, e := range resp.Edges {
		byName[e.GetName()] = e
	}
	for range asked {
		a := <-answers
		if a.err != nil {
			resp.UnreachableMembers = append(resp.UnreachableMembers, a.member)
			continue
		}
		resp.Revision = max(resp.Revision, a.resp.GetRevision())
		for _, e := range a.resp.GetEdges() {
			if cur, ok := byName[e.GetName()]; !ok || preferEdge(e, cur) {
				byName[e.GetName()] = e
			}
		}
	}
	resp.Edges = resp.Edges[:0]
	for _, e := range byName {
		if e.GetAppliedRevision() < resp.Revision {
			e.Lag = resp.Revision - e.GetAppliedRevision()
		} else {
			e.Lag = 0
		}
		resp.Edges = append(resp.Edges, e)
	}
	sort.Slice(resp.Edges, func(i, j int) bool { return resp.Edges[i].GetName() < resp.Edges[j].GetName() })
	sort.Strings(resp.UnreachableMembers)
	return resp
}

// assignmentTTL is how long one member reuses its merged view of the edge
// fleet for CheckAssignment: every edge asks every few seconds, and each
// answer costs a call to every member.
const assignmentTTL = 2 * time.Second

// fleetMissRefresh is how soon a health vote from an edge the cached view
// does not show connected may refresh the view: a new edge's votes count
// within about a second, and votes under names no member knows cost at most
// one round of calls per second.
const fleetMissRefresh = time.Second

// fleetView caches the merged view of the edges connected across the
// cluster: their regions (CheckAssignment) and names (health votes).
type fleetView struct {
	mu          sync.Mutex
	at          time.Time
	regions     []string
	connected   map[string]bool
	unreachable []string
}

// refreshFleet renews the view when it is older than maxAge (or from the
// future). The caller holds s.fleet.mu.
func (s *Server) refreshFleet(ctx context.Context, maxAge time.Duration) {
	c := &s.fleet
	now := s.cfg.Now()
	if !c.at.IsZero() && now.Sub(c.at) < maxAge && !now.Before(c.at) {
		return
	}
	all := s.allEdges(ctx)
	c.regions = c.regions[:0]
	c.connected = make(map[string]bool, len(all.GetEdges()))
	for _, e := range all.GetEdges() {
		if e.GetConnected() {
			c.connected[e.GetName()] = true
			if e.GetRegion() != "" {
				c.regions = append(c.regions, e.GetRegion())
			}
		}
	}
	c.unreachable, c.at = all.GetUnreachableMembers(), now
}

// edgeConnected reports whether edge has a watch stream open to some
// member. Health votes count only from such edges: an edge that follows no
// member's stream is not in anyone's assignment, and a name that is
// nobody's edge votes for nothing.
func (s *Server) edgeConnected(ctx context.Context, edge string) bool {
	if s.edges.isConnected(edge) {
		return true
	}
	c := &s.fleet
	c.mu.Lock()
	defer c.mu.Unlock()
	s.refreshFleet(ctx, assignmentTTL)
	if !c.connected[edge] {
		s.refreshFleet(ctx, fleetMissRefresh)
	}
	return c.connected[edge]
}

// CheckAssignment implements EdgeService.
func (s *Server) CheckAssignment(ctx context.Context, req *pb.CheckAssignmentRequest) (*pb.CheckAssignmentResponse, error) {
	if req.GetRegion() == "" {
		return nil, invalidArg("region", "the asking edge's region is required")
	}
	c := &s.fleet
	c.mu.Lock()
	defer c.mu.Unlock()
	s.refreshFleet(ctx, assignmentTTL)
	regions := append(slices.Clone(c.regions), req.GetRegion())
	slices.Sort(regions)
	return &pb.CheckAssignmentResponse{EdgeRegions: slices.Compact(regions), UnreachableMembers: slices.Clone(c.unreachable)}, nil
}

func preferEdge(a, b *pb.EdgeStatus) bool {
	if a.GetConnected() != b.GetConnected() {
		return a.GetConnected()
	}
	return max(a.GetLastAckUnixMs(), a.GetConnectedAtUnixMs()) > max(b.GetLastAckUnixMs(), b.GetConnectedAtUnixMs())
}
