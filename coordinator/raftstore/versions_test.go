package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/coordinator/state"
	"github.com/edgecell/edgecell/coordinator/watch"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/freeport"
	"github.com/edgecell/edgecell/internal/testutil"
)

// unknownOpEntry is a command as a newer leader would log it with op number
// 99, which this binary's proto does not have.
func unknownOpEntry(ignorable bool) []byte {
	var b []byte
	if ignorable {
		b = stampIgnorable(b, true)
	}
	payload := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "new")
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	return protowire.AppendBytes(b, payload)
}

func memberEntry(t *testing.T, name string) []byte {
	t.Helper()
	data, err := proto.Marshal(&pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: &pb.Member{
		Name: name, Region: "us-east", RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2",
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func testFSM() *fsm {
	st := state.New()
	hub := watch.NewHub(watch.Options{}, func() *pb.State { return st.Freeze().State() }, 0)
	return newFSM(st, hub, &clusterIdentity{log: quietLogger()}, quietLogger())
}

func applyEntry(f *fsm, index uint64, data []byte) *pb.CommandResult {
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(*pb.CommandResult)
}

// An op this binary does not know, not flagged ignorable, stops the FSM:
// no panic, nothing applied from it on, the applied index stays before it,
// and neither a snapshot nor a restore is taken.
func TestFSMHaltsOnAnUnknownOp(t *testing.T) {
	f := testFSM()
	applyEntry(f, 1, memberEntry(t, "m1"))
	res := applyEntry(f, 2, unknownOpEntry(false))
	if res.GetError().GetCode() != pb.CommandError_CODE_UNKNOWN_OP {
		t.Fatalf("unknown op: result %v, want CODE_UNKNOWN_OP", res)
	}
	select {
	case <-f.halted:
	default:
		t.Fatal("halted is not closed")
	}
	applyEntry(f, 3, memberEntry(t, "m3"))
	applyEntry(f, 4, []byte{0xff}) // undecodable: a halted FSM does not even look
	f.StoreConfiguration(5, raft.Configuration{})
	if _, ok := f.state.Freeze().Member("m3"); ok {
		t.Fatal("a command after the unknown op was applied")
	}
	if applied, _ := f.applied.current(); applied != 1 {
		t.Fatalf("applied index %d, want 1 (the entry before the unknown op)", applied)
	}
	if _, err := f.Snapshot(); !errors.Is(err, state.ErrUnknownOp) {
		t.Fatalf("Snapshot of a halted FSM: %v, want an error wrapping state.ErrUnknownOp", err)
	}
	if err := f.Restore(io.NopCloser(strings.NewReader(""))); !errors.Is(err, state.ErrUnknownOp) {
		t.Fatalf("Restore into a halted FSM: %v, want an error wrapping state.ErrUnknownOp", err)
	}
	if err := f.haltError(); err == nil || !strings.Contains(err.Error(), "op 99") || !strings.Contains(err.Error(), "index 2") {
		t.Fatalf("halt error %v does not name op 99 at index 2", err)
	}
}

// An ignorable op this binary does not know is skipped and the FSM goes on.
func TestFSMSkipsAnIgnorableUnknownOp(t *testing.T) {
	f := testFSM()
	if res := applyEntry(f, 1, unknownOpEntry(true)); !res.GetSkipped() || res.GetError() != nil {
		t.Fatalf("ignorable unknown op: result %v, want skipped", res)
	}
	applyEntry(f, 2, memberEntry(t, "m2"))
	if _, ok := f.state.Freeze().Member("m2"); !ok {
		t.Fatal("the command after a skipped one was not applied")
	}
	if applied, _ := f.applied.current(); applied != 2 {
		t.Fatalf("applied index %d, want 2", applied)
	}
	if _, err := f.Snapshot(); err != nil {
		t.Fatalf("Snapshot after a skipped op: %v", err)
	}
}

func proposeMember(t *testing.T, s *Store, m *pb.Member) {
	t.Helper()
	res, err := s.Propose(context.Background(), &pb.Command{Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: m}}})
	if err != nil || res.GetError() != nil {
		t.Fatalf("put member %s: %v %v", m.GetName(), err, res.GetError())
	}
}

func rotateKey(s *Store) error {
	_, err := s.Propose(context.Background(), &pb.Command{Op: &pb.Command_RotateKey{RotateKey: &pb.RotateKeyOp{Id: "k_0000000000000000", Secret: "sk_x"}}})
	return err
}

// The leader refuses to log an op that a member of the configuration does
// not advertise, naming it; a record of a server outside the configuration
// does not count; once the member advertises the op it is proposed.
func TestProposeRefusesAnOpAMemberDoesNotApply(t *testing.T) {
	addr, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	s := openSingle(t, t.TempDir(), addr)
	defer s.Close()
	if err := rotateKey(s); err != nil {
		t.Fatalf("rotate_key with no member records (every member applies the legacy ops): %v", err)
	}
	old := slices.DeleteFunc(state.Ops(), func(n uint32) bool { return n == 25 })
	proposeMember(t, s, &pb.Member{Name: "ghost", Region: "us-east", RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2", Ops: old})
	if err := rotateKey(s); err != nil {
		t.Fatalf("rotate_key refused for a record outside the raft configuration: %v", err)
	}
	self := &pb.Member{Name: "n1", Region: "us-east", RaftAddr: addr, GrpcAddr: "127.0.0.1:2", Ops: old}
	proposeMember(t, s, self)
	err = rotateKey(s)
	if !errors.Is(err, ErrOpUnsupported) {
		t.Fatalf("rotate_key while n1 does not advertise it: %v, want ErrOpUnsupported", err)
	}
	for _, want := range []string{"rotate_key", "op 25", "member n1", "upgrade"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if s.Applied() == 0 || s.Halted() != nil {
		t.Fatal("the refusal touched the state machine")
	}
	self.Ops = state.Ops()
	proposeMember(t, s, self)
	if err := rotateKey(s); err != nil {
		t.Fatalf("rotate_key once n1 advertises it: %v", err)
	}
}

// A member that meets an op its binary cannot apply persists nothing past
// it: it refuses snapshots and proposals, and restarted on the same binary
// it replays the log up to the same entry and halts there again, with the
// state it had before it, and no panic.
func TestHaltedMemberPersistsNothingPastTheHalt(t *testing.T) {
	dir := t.TempDir()
	addr, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	s := openSingle(t, dir, addr)
	putMembers(t, s, 0, 5)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putMembers(t, s, 5, 10)
	if err := s.raft.Apply(unknownOpEntry(false), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	haltIndex := s.raft.LastIndex()
	if err := s.raft.Apply(memberEntry(t, "m010"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	wantHalt := func(s *Store) {
		t.Helper()
		select {
		case <-s.HaltNotify():
		case <-time.After(10 * time.Second):
			t.Fatal("the store did not halt")
		}
		var h *state.HaltError
		if err := s.Halted(); !errors.As(err, &h) || h.Index != haltIndex || h.Op.Number != 99 {
			t.Fatalf("Halted() = %v; want op 99 at index %d", err, haltIndex)
		}
		for i := range 10 {
			if _, ok := s.View().Member(fmt.Sprintf("m%03d", i)); !ok {
				t.Fatalf("member m%03d, applied before the halt, is missing", i)
			}
		}
		if _, ok := s.View().Member("m010"); ok {
			t.Fatal("m010, logged after the unknown op, was applied")
		}
		if err := s.Snapshot(); !errors.Is(err, state.ErrUnknownOp) {
			t.Fatalf("Snapshot of a halted member: %v, want an error wrapping state.ErrUnknownOp", err)
		}
	}
	wantHalt(s)
	if _, err := s.Propose(context.Background(), &pb.Command{Op: &pb.Command_Tick{Tick: &pb.TickOp{}}}); !errors.Is(err, state.ErrUnknownOp) {
		t.Fatalf("Propose on a halted member: %v, want an error wrapping state.ErrUnknownOp", err)
	}
	s.Close()

	s, err = openTest(Config{Name: "n1", RaftAddr: addr, DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testutil.Eventually(t, 10*time.Second, func() error {
		if s.Halted() == nil {
			return errors.New("not halted again yet")
		}
		return nil
	})
	wantHalt(s)
}

// The registry, not the proposer, decides whether a command is ignorable:
// a caller's flag on an op that may not be skipped does not reach the log.
func TestProposeStampsIgnorableFromTheRegistry(t *testing.T) {
	if n := (&pb.Command{}).ProtoReflect().Descriptor().Fields().ByName("ignorable").Number(); n != ignorableField {
		t.Fatalf("ignorable is field %d, stampIgnorable writes %d", n, ignorableField)
	}
	addr, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	s := openSingle(t, t.TempDir(), addr)
	defer s.Close()
	cmd := &pb.Command{Ignorable: true, Op: &pb.Command_PutMember{PutMember: &pb.PutMemberOp{Member: &pb.Member{
		Name: "m1", Region: "us-east", RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2",
	}}}}
	if res, err := s.Propose(context.Background(), cmd); err != nil || res.GetError() != nil {
		t.Fatalf("propose: %v %v", err, res.GetError())
	}
	var l raft.Log
	if err := s.logs.GetLog(s.raft.LastIndex(), &l); err != nil {
		t.Fatal(err)
	}
	logged := &pb.Command{}
	if err := proto.Unmarshal(l.Data, logged); err != nil {
		t.Fatal(err)
	}
	if logged.GetPutMember() == nil || logged.GetIgnorable() {
		t.Fatalf("logged %v; want the put_member without ignorable", logged)
	}
	if !cmd.GetIgnorable() {
		t.Fatal("stamping modified the caller's command")
	}
}

// A snapshot whose state applied an op this binary does not apply (a newer
// binary's, kept across a downgrade or sent by a newer leader) halts the
// FSM instead of being restored.
func TestFSMHaltsOnASnapshotItCannotRestore(t *testing.T) {
	newer := testFSM()
	applyEntry(newer, 1, memberEntry(t, "m1"))
	fs, err := newer.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := fs.(*fsmSnapshot).frozen.Snapshot(1)
	if err != nil {
		t.Fatal(err)
	}
	snap.OpsApplied = append(snap.OpsApplied, 99)
	data, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	f := testFSM()
	if err := f.Restore(io.NopCloser(strings.NewReader(string(data)))); err != nil {
		t.Fatalf("Restore: %v; want the FSM halted, not an error (raft would retry or refuse to start)", err)
	}
	select {
	case <-f.halted:
	default:
		t.Fatal("halted is not closed")
	}
	if _, ok := f.state.Freeze().Member("m1"); ok {
		t.Fatal("the snapshot's state was restored")
	}
	applyEntry(f, 2, memberEntry(t, "m2"))
	if _, ok := f.state.Freeze().Member("m2"); ok {
		t.Fatal("a command after the unrestorable snapshot was applied")
	}
	if _, err := f.Snapshot(); !errors.Is(err, state.ErrUnknownOp) {
		t.Fatalf("Snapshot after the halt: %v, want an error wrapping state.ErrUnknownOp", err)
	}
}
