package state

import (
	"fmt"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Report batches: what makes edge reports idempotent.
//
// An edge names each outcome or health batch with a random non-zero
// batch_id and resends a batch whose fate it does not know (a timeout, an
// election: it may have committed) with the same id. The store remembers,
// per edge and per kind of report, the id of the last batch it counted; a
// batch carrying that id again is acknowledged and counts nothing, so a
// retry never counts a failure twice and trips a breaker. batch_id 0 opts
// out (every such batch counts).
//
// Only the last id is kept: an edge sends its next batch only once the
// previous one was acknowledged (or refused, when nothing counted), so a
// retry of anything older cannot arrive. The record is one small entry per
// edge, kept until ReportRetryHorizon after the edge's last report and then
// reaped by the leader's Tick; at most MaxReportRecords are kept, the one
// whose edge reported longest ago giving way to a new edge.

const (
	// ReportRetryHorizon is how long after an edge's last report its batch
	// ids are remembered. An edge gives up resending a batch well before
	// (edgenode/report drops one it could not deliver for 10 minutes).
	ReportRetryHorizon = time.Hour
	// MaxReportRecords bounds the edges whose batch ids are remembered.
	MaxReportRecords = 100_000
)

// reportRecord is one edge's last counted batches.
type reportRecord struct {
	outcomes uint64 // batch_id of the last outcome batch counted; 0: none
	health   uint64 // batch_id of the last health batch counted; 0: none
	seen     int64  // the leader's clock (unix ns) at the edge's last counted report
}

// expires is when the record may be reaped, in unix ms.
func (r reportRecord) expires() int64 {
	return time.Unix(0, r.seen).Add(ReportRetryHorizon).UnixMilli()
}

// reportKind picks one kind of batch id in a record.
type reportKind int

const (
	outcomeReports reportKind = iota
	healthReports
)

func (r *reportRecord) last(kind reportKind) *uint64 {
	if kind == healthReports {
		return &r.health
	}
	return &r.outcomes
}

// replayed reports whether batch is the last counted batch of this kind
// from edge: a retry, to acknowledge without counting.
func (tx *txn) replayed(edge string, kind reportKind, batch uint64) bool {
	if batch == 0 {
		return false
	}
	r, ok := tx.t.reports.Get(edge)
	return ok && *r.last(kind) == batch
}

// counted remembers batch as edge's last counted batch of this kind, at
// tx.now, evicting the record of the edge that reported longest ago when
// the table is full.
func (tx *txn) counted(edge string, kind reportKind, batch uint64) {
	if batch == 0 {
		return
	}
	r, ok := tx.t.reports.Get(edge)
	if ok {
		tx.t.reportExpiry.Delete(expiryKey(r.expires(), edge))
	} else if tx.t.reports.Len() >= MaxReportRecords {
		if k, _, ok := tx.t.reportExpiry.Min(); ok {
			tx.t.reportExpiry.Delete(k)
			tx.t.reports.Delete(k[17:])
		}
	}
	*r.last(kind) = batch
	r.seen = tx.now.UnixNano()
	tx.t.reports.Set(edge, r)
	tx.t.reportExpiry.Set(expiryKey(r.expires(), edge), struct{}{})
	tx.dirty = true
}

// reapReports forgets, up to MaxReapPerTick, the records of edges whose
// last report is older than ReportRetryHorizon.
func (tx *txn) reapReports() {
	tx.reapExpired(tx.t.reportExpiry, func(edge string) { tx.t.reports.Delete(edge) })
}

// reportDeadline is when the next record may be reaped, for NextDeadline.
func (v *version) reportDeadline() (time.Time, bool) { return earliestExpiry(v.t.reportExpiry) }

// ReportBatches returns the batch ids remembered for edge's outcome and
// health reports (0: none) and whether any record of edge is held.
func (v View) ReportBatches(edge string) (outcomes, health uint64, ok bool) {
	r, ok := v.t.reports.Get(edge)
	return r.outcomes, r.health, ok
}

// reportRecords lists the records for a raft snapshot, by edge.
func (v *version) reportRecords() []*pb.ReportBatches {
	out := make([]*pb.ReportBatches, 0, v.t.reports.Len())
	v.t.reports.Scan(func(edge string, r reportRecord) bool {
		out = append(out, &pb.ReportBatches{Edge: edge, OutcomesBatch: r.outcomes, HealthBatch: r.health, SeenUnixNano: r.seen})
		return true
	})
	return out
}

// restoreReports loads a snapshot's records into t: each names an edge,
// once.
func (t tables) restoreReports(list []*pb.ReportBatches) error {
	for i, rb := range list {
		edge := rb.GetEdge()
		if edge == "" {
			return fmt.Errorf("%w: report_batches[%d].edge is empty", ErrInvalidSnapshot, i)
		}
		if _, dup := t.reports.Get(edge); dup {
			return fmt.Errorf("%w: report_batches[%d].edge: duplicate edge %q", ErrInvalidSnapshot, i, edge)
		}
		r := reportRecord{outcomes: rb.GetOutcomesBatch(), health: rb.GetHealthBatch(), seen: rb.GetSeenUnixNano()}
		t.reports.Set(edge, r)
		t.reportExpiry.Set(expiryKey(r.expires(), edge), struct{}{})
	}
	return nil
}
