package server

import (
	"fmt"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/names"
)

// Limits on what an edge's request may make the cluster hold: names must
// be names, and free text (reasons, details) is bounded, so that no report
// can grow the replicated state, the edge registry or a log line by more
// than a few hundred bytes per field. They hold with TLS off too, where the
// method table checks no identity. The request size limits are in the
// method table.
const (
	// MaxReasonBytes bounds an ack's reject_reason.
	MaxReasonBytes = 1024
	// MaxDetailBytes bounds a probe's or health check's detail ("HTTP 503",
	// "connect: connection refused").
	MaxDetailBytes = 256
	// MaxReportEntries bounds the endpoints one report names.
	MaxReportEntries = 10000
	// MaxChecksPerEndpoint bounds the results one health report carries for
	// one endpoint (edges keep the newest 32).
	MaxChecksPerEndpoint = 64
)

// checkEdgeRequest applies the limits to an EdgeService request.
func checkEdgeRequest(req any) error {
	if e, ok := req.(edgeNamed); ok {
		if err := checkID("edge", e.GetEdge()); err != nil {
			return err
		}
	}
	if r, ok := req.(regionNamed); ok && r.GetRegion() != "" && !names.ValidRegion(r.GetRegion()) {
		return invalidArg("region", "region %.64q is invalid: %s", r.GetRegion(), names.RegionRule)
	}
	switch r := req.(type) {
	case *pb.AckRequest:
		return maxLen("reject_reason", r.GetRejectReason(), MaxReasonBytes)
	case *pb.ReportProbeRequest:
		if err := checkID("endpoint", r.GetEndpoint()); err != nil {
			return err
		}
		return maxLen("detail", r.GetDetail(), MaxDetailBytes)
	case *pb.AcquireProbeRequest:
		return checkID("endpoint", r.GetEndpoint())
	case *pb.ReportOutcomesRequest:
		if n := len(r.GetOutcomes()); n > MaxReportEntries {
			return invalidArg("outcomes", "%d endpoints in one report; at most %d", n, MaxReportEntries)
		}
		for i, o := range r.GetOutcomes() {
			if err := checkID(fmt.Sprintf("outcomes[%d].endpoint", i), o.GetEndpoint()); err != nil {
				return err
			}
		}
	case *pb.ReportHealthRequest:
		if n := len(r.GetChecks()); n > MaxReportEntries {
			return invalidArg("checks", "%d endpoints in one report; at most %d", n, MaxReportEntries)
		}
		for i, c := range r.GetChecks() {
			if err := checkID(fmt.Sprintf("checks[%d].endpoint", i), c.GetEndpoint()); err != nil {
				return err
			}
			if n := len(c.GetResults()); n > MaxChecksPerEndpoint {
				return invalidArg(fmt.Sprintf("checks[%d].results", i), "%d results for one endpoint; at most %d", n, MaxChecksPerEndpoint)
			}
			for j, res := range c.GetResults() {
				if err := maxLen(fmt.Sprintf("checks[%d].results[%d].detail", i, j), res.GetDetail(), MaxDetailBytes); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkID(field, id string) error {
	if !names.ValidID(id) {
		if id == "" {
			return invalidArg(field, "%s is required", field)
		}
		return invalidArg(field, "%.64q is invalid: %s", id, names.IDRule)
	}
	return nil
}

func maxLen(field, s string, limit int) error {
	if len(s) > limit {
		return invalidArg(field, "%d bytes; at most %d", len(s), limit)
	}
	return nil
}
