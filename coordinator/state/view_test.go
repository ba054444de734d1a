package state

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/clusterid"
)

// reading is every read of a View, as protos (compared with proto.Equal)
// and the plain values printed.
type reading struct {
	msgs  []proto.Message
	plain string
}

func readAll(t *testing.T, v View) reading {
	t.Helper()
	var r reading
	r.msgs = append(r.msgs, v.Config())
	c, ok := v.Cell("c1")
	r.msgs = append(r.msgs, &pb.ListCellsResponse{Cells: append(v.Cells(), c)})
	r.plain += fmt.Sprint("cell ", ok, ";")
	p, ok := v.Placement("tenant-a")
	ps, next := v.Placements("tenant-", "", 1)
	r.msgs = append(r.msgs, &pb.ListPlacementsResponse{Placements: append(ps, p), NextStartAfter: next})
	r.plain += fmt.Sprint("placement ", ok, ";")
	m, ok := v.Member("n1")
	r.msgs = append(r.msgs, &pb.State{Members: append(v.Members(), m), Keys: v.Keys()})
	r.plain += fmt.Sprint("member ", ok, ";")
	exists, revoked := v.KeyStatus("k1")
	r.plain += fmt.Sprint("nonces ", v.Nonces(), v.KeyNonces("k1"), v.NonceStored("k1", "n-1"), exists, revoked, ";")
	r.msgs = append(r.msgs, &pb.ListBreakersResponse{Breakers: v.Breakers()}, &pb.ListHealthResponse{Endpoints: v.Health()})
	d, ok := v.NextDeadline()
	r.plain += fmt.Sprint("deadline ", d.UnixMilli(), ok, ";")
	o, h, ok := v.ReportBatches("e1")
	r.plain += fmt.Sprint("reports ", o, h, ok, ";")
	rotate := protoreflect.FieldNumber((&pb.Command{}).ProtoReflect().Descriptor().Fields().ByName("rotate_key").Number())
	r.plain += fmt.Sprint("ops ", v.MembersLacking(rotate, []string{"n1", "n2"}), v.EveryMemberApplies(rotate), ";")
	r.plain += fmt.Sprint("id ", v.ClusterID(), " revision ", v.Revision(), ";")
	snap, err := v.Snapshot(v.Revision())
	if err != nil {
		t.Fatal(err)
	}
	r.msgs = append(r.msgs, v.State(), snap)
	return r
}

func (r reading) equal(o reading) bool {
	if r.plain != o.plain || len(r.msgs) != len(o.msgs) {
		return false
	}
	for i := range r.msgs {
		if !proto.Equal(r.msgs[i], o.msgs[i]) {
			return false
		}
	}
	return true
}

// A View taken before an Apply keeps answering every read from its own
// revision, whatever the later commands changed in every table: a handler
// that reads twice from one view cannot see two revisions.
func TestViewKeepsItsRevision(t *testing.T) {
	s := withBreakers(t)
	id := clusterid.New()
	mustChange(t, s, 11, initClusterCmd(id))
	mustChange(t, s, 12, putMemberCmd(&pb.Member{Name: "n1", Region: "us-east", RaftAddr: "127.0.0.1:7001", GrpcAddr: "127.0.0.1:7101", Ops: []uint32{10}}))
	mustChange(t, s, 13, at(0, createKeyCmd("k1", "key k1", "secret-k1")))
	mustQuiet(t, s, 14, at(0, nonceCmd(check("k1", "n-1", "c-1", time.Minute))))
	mustQuiet(t, s, 15, at(0, batch(7, outcomesCmd("e1", connectErrors("c1-use", 2)))))
	mustChange(t, s, 16, at(time.Millisecond, batch(8, outcomesCmd("e1", connectErrors("c1-use", 1)))))

	v := s.Freeze()
	before := readAll(t, v)
	if v.Revision() != 16 {
		t.Fatalf("view at revision %d; want 16", v.Revision())
	}

	cfg := breakerConfig()
	cfg.Cells[0].Endpoints = cfg.Cells[0].Endpoints[:1]
	cfg.Placements = cfg.Placements[1:]
	mustChange(t, s, 17, applyConfigCmd(cfg))
	mustChange(t, s, 18, putMemberCmd(member("n2", "eu-west")))
	mustChange(t, s, 19, deleteMemberCmd("n1"))
	mustChange(t, s, 20, at(0, revokeKeyCmd("k1")))
	mustChange(t, s, 21, at(0, createKeyCmd("k2", "key k2", "secret-k2")))
	mustQuiet(t, s, 22, at(0, nonceCmd(check("k2", "n-2", "c-2", time.Minute))))
	mustChange(t, s, 23, resetCmd("c1-use"))
	mustQuiet(t, s, 24, at(2*time.Millisecond, batch(9, checksCmd("e1", "eu-west", "c2-aps", false))))
	// The tick reaps the nonces and ends c1-use's ejection (whether or not
	// that emits an event).
	if res, _ := s.Apply(25, at(time.Hour, tickCmd())); res.GetError() != nil {
		t.Fatal(res.GetError())
	}

	if after := readAll(t, s.Freeze()); after.equal(before) {
		t.Fatal("the commands after the view changed nothing it reads; the test proves nothing")
	}
	if got := readAll(t, v); !got.equal(before) {
		t.Fatalf("the view taken at revision 16 moved with the store:\nbefore %s\nafter  %s", before.plain, got.plain)
	}
}

// Restore swaps in the snapshot's whole state: the store then reads and
// applies like the snapshot's source, and a view taken before keeps the
// state it captured.
func TestRestoreSwapsAndViewsKeepTheirState(t *testing.T) {
	src := trippedStore(t)
	mustChange(t, src, 14, at(0, createKeyCmd("k1", "key k1", "secret-k1")))
	s := configured(t)
	mustChange(t, s, 11, putMemberCmd(member("n1", "us-east")))
	v := s.Freeze()
	before := readAll(t, v)
	snap, err := src.Freeze().Snapshot(14)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, s.Freeze()), readAll(t, src.Freeze()); !got.equal(want) {
		t.Fatalf("restored store reads\n%s\nwant the source's\n%s", got.plain, want.plain)
	}
	if !readAll(t, v).equal(before) {
		t.Fatal("a view taken before the restore moved")
	}
	for _, st := range []*Store{s, src} {
		mustChange(t, st, 15, at(time.Millisecond, revokeKeyCmd("k1")))
	}
	if !proto.Equal(s.Freeze().State(), src.Freeze().State()) {
		t.Fatal("restored store and its source diverged after the same command")
	}
	// A refused snapshot leaves the state as it was.
	snap.State.Revision = 1
	if err := s.Restore(snap); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("restore of a snapshot stamped past its revision: %v; want ErrInvalidSnapshot", err)
	}
	if s.Freeze().Revision() != 15 {
		t.Fatalf("refused restore moved the revision to %d", s.Freeze().Revision())
	}
}
