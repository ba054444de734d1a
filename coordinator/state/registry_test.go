package state

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// TestRegistryCoversEveryOp fails when a case of Command.op has no handler
// in the registry's table (or the table names something else).
func TestRegistryCoversEveryOp(t *testing.T) {
	oneof := (&pb.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	table := map[protoreflect.Name]opSpec{}
	for _, spec := range opTable() {
		table[spec.name] = spec
	}
	fields := oneof.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		spec, ok := table[f.Name()]
		switch {
		case !ok:
			t.Errorf("Command.op case %s (field %d) has no entry in opTable (coordinator/state/registry.go)", f.Name(), f.Number())
		case spec.apply == nil:
			t.Errorf("Command.op case %s (field %d) has no apply function", f.Name(), f.Number())
		}
		if f.Number() < firstOpNumber {
			t.Errorf("Command.op case %s is field %d; ops are numbered %d and above", f.Name(), f.Number(), firstOpNumber)
		}
		delete(table, f.Name())
	}
	for name := range table {
		t.Errorf("opTable has %q, which is not a case of Command.op", name)
	}
	// Every op of the legacy set (what a member advertising none applies)
	// must still exist with its number.
	for n := legacyFirst; n <= legacyLast; n++ {
		if f := fields.ByNumber(n); f == nil {
			t.Errorf("legacy op %d is no longer a case of Command.op", n)
		}
	}
	// The ops advertised are the table's, less those this build withholds.
	var want []uint32
	for i := 0; i < fields.Len(); i++ {
		if !slices.Contains(withheldOps(), fields.Get(i).Name()) {
			want = append(want, uint32(fields.Get(i).Number()))
		}
	}
	slices.Sort(want)
	if got := Ops(); !slices.Equal(got, want) {
		t.Errorf("Ops() = %v, want %v", got, want)
	}
}

func TestRegistryRefusesBadTables(t *testing.T) {
	noop := func(*txn, *pb.Command) ([]*pb.Event, *pb.CommandError) { return nil, nil }
	for name, table := range map[string][]opSpec{
		"duplicate":   {{name: "tick", apply: noop}, {name: "tick", apply: noop}},
		"not an op":   {{name: "expect_revision", apply: noop}},
		"not a field": {{name: "frobnicate", apply: noop}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("newRegistry accepted the table")
				}
			}()
			newRegistry(table, nil)
		})
	}
}

// unknownOpCmd is a command as a binary decodes it when a newer leader
// proposed op number n, which this binary's proto does not have: the op
// lands in the unknown fields.
func unknownOpCmd(t *testing.T, n protowire.Number, ignorable bool) *pb.Command {
	t.Helper()
	var b []byte
	if ignorable {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 1_700_000_000_000_000_000)
	payload := protowire.AppendTag(nil, 1, protowire.BytesType)
	payload = protowire.AppendString(payload, "something new")
	b = protowire.AppendTag(b, n, protowire.BytesType)
	b = protowire.AppendBytes(b, payload)
	cmd := &pb.Command{}
	if err := proto.Unmarshal(b, cmd); err != nil {
		t.Fatal(err)
	}
	if cmd.GetOp() != nil || cmd.GetIgnorable() != ignorable {
		t.Fatalf("decoded %v: want no known op, ignorable %v", cmd, ignorable)
	}
	return cmd
}

func TestOpOf(t *testing.T) {
	if op := OpOf(putPlacementCmd("k", "c1")); op.Number != 13 || op.Name != "put_placement" || !op.Known || op.Ignorable {
		t.Errorf("OpOf(put_placement) = %+v", op)
	}
	if op := OpOf(unknownOpCmd(t, 99, true)); op.Number != 99 || op.Name != "op 99" || op.Known {
		t.Errorf("OpOf(unknown 99) = %+v", op)
	}
	if op := OpOf(&pb.Command{ExpectRevision: 3}); op.Number != 0 {
		t.Errorf("OpOf(no op) = %+v", op)
	}
}

// An ignorable op this binary does not know is skipped: nothing changes,
// the result says so, and the next command applies as usual.
func TestUnknownIgnorableOpIsSkipped(t *testing.T) {
	s := configured(t)
	before := s.Freeze().State()
	res, ch := s.Apply(11, unknownOpCmd(t, 99, true))
	if !res.GetSkipped() || res.GetError() != nil || res.GetRevision() != 10 || ch != nil {
		t.Fatalf("unknown ignorable op: result %v, change %v; want skipped at revision 10, no change", res, ch)
	}
	if !proto.Equal(s.Freeze().State(), before) {
		t.Fatal("skipping the op changed the state")
	}
	if err := s.Halted(); err != nil {
		t.Fatalf("store halted on an ignorable op: %v", err)
	}
	mustChange(t, s, 12, putPlacementCmd("after", "c1"))
}

// An op this binary does not know and may not skip halts the store: that
// command and every later one apply nothing, and the refusal says which op
// at which index and that the binary must be upgraded.
func TestUnknownOpHaltsTheStore(t *testing.T) {
	s := configured(t)
	before := s.Freeze().State()
	res, ch := s.Apply(11, unknownOpCmd(t, 99, false))
	if ch != nil || res.GetRevision() != 10 || res.GetError().GetCode() != pb.CommandError_CODE_UNKNOWN_OP {
		t.Fatalf("unknown op: result %v, change %v; want CODE_UNKNOWN_OP at revision 10, no change", res, ch)
	}
	for _, want := range []string{"op 99", "index 11", "must be upgraded"} {
		if !strings.Contains(res.GetError().GetMessage(), want) {
			t.Errorf("refusal %q does not say %q", res.GetError().GetMessage(), want)
		}
	}
	var h *HaltError
	if err := s.Halted(); !errors.As(err, &h) || !errors.Is(err, ErrUnknownOp) || h.Index != 11 || h.Op.Number != 99 {
		t.Fatalf("Halted() = %v; want a HaltError for op 99 at index 11", err)
	}
	// Known, valid commands after it apply nothing either: applying them
	// without op 99's effect is how replicas would diverge.
	for i, cmd := range []*pb.Command{putPlacementCmd("after", "c1"), deletePlacementCmd("tenant-a"), unknownOpCmd(t, 99, true)} {
		res, ch := s.Apply(uint64(12+i), cmd)
		if ch != nil || res.GetError().GetCode() != pb.CommandError_CODE_UNKNOWN_OP || res.GetSkipped() {
			t.Fatalf("command at %d after the halt: result %v, change %v; want the same refusal", 12+i, res, ch)
		}
	}
	if !proto.Equal(s.Freeze().State(), before) {
		t.Fatal("a halted store changed its state")
	}
}

func TestMemberOps(t *testing.T) {
	s := configured(t)
	m := member("c1", "us-east")
	m.Ops = []uint32{10, 11, 25, 30}
	mustChange(t, s, 11, putMemberCmd(m))
	got, _ := s.Freeze().Member("c1")
	if !slices.Equal(got.GetOps(), m.Ops) {
		t.Fatalf("stored ops %v, want %v", got.GetOps(), m.Ops)
	}
	// A record that changes only its ops is a change (a member upgraded).
	m.Ops = []uint32{10, 11, 30}
	mustChange(t, s, 12, putMemberCmd(m))
	mustChange(t, s, 13, putMemberCmd(member("legacy", "us-east")))

	for _, tc := range []struct {
		ops   []uint32
		field string
	}{
		{[]uint32{9}, "member.ops[0]"},
		{[]uint32{10, 12, 12}, "member.ops[2]"},
		{[]uint32{11, 10}, "member.ops[1]"},
		{[]uint32{10, 1 << 29}, "member.ops[1]"},
		{make([]uint32, MaxMemberOps+1), "member.ops"},
	} {
		bad := member("bad", "us-east")
		bad.Ops = tc.ops
		mustRefuse(t, s, 14, putMemberCmd(bad), pb.CommandError_CODE_INVALID_ARGUMENT, tc.field)
	}

	tests := []struct {
		op   protoreflect.FieldNumber
		want []string // of c1, legacy, absent
		all  bool
	}{
		{25, []string{"c1"}, false},               // c1 advertises it no more; legacy and absent have it
		{30, []string{"legacy", "absent"}, false}, // new: only c1 has it
		{11, nil, true},
		{28, []string{"c1", "legacy", "absent"}, false},
	}
	for _, tc := range tests {
		if got := s.Freeze().MembersLacking(tc.op, []string{"c1", "legacy", "absent"}); !slices.Equal(got, tc.want) {
			t.Errorf("MembersLacking(%d) = %v, want %v", tc.op, got, tc.want)
		}
		if got := s.Freeze().EveryMemberApplies(tc.op); got != tc.all {
			t.Errorf("EveryMemberApplies(%d) = %v, want %v", tc.op, got, tc.all)
		}
	}
}

// A snapshot lists the ops of the non-ignorable commands its state applied,
// and a binary that does not apply one of them halts rather than restore it.
func TestSnapshotCarriesTheOpsApplied(t *testing.T) {
	s := configured(t)
	mustChange(t, s, 11, putPlacementCmd("k", "c1"))
	mustChange(t, s, 12, putPlacementCmd("k2", "c1"))
	mustRefuse(t, s, 13, deletePlacementCmd("missing"), pb.CommandError_CODE_NOT_FOUND, "key")
	snap, err := s.Freeze().Snapshot(13)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{10, 13}; !slices.Equal(snap.GetOpsApplied(), want) {
		t.Fatalf("ops_applied %v, want %v (apply_config, put_placement; not the refused delete)", snap.GetOpsApplied(), want)
	}
	restored, err := FromSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := restored.Freeze().Snapshot(13)
	if !proto.Equal(again, snap) {
		t.Fatal("a restored store's snapshot differs from the one it was restored from")
	}

	snap.OpsApplied = []uint32{10, 13, 99}
	_, err = FromSnapshot(snap)
	var h *HaltError
	if !errors.As(err, &h) || !h.Snapshot || h.Op.Number != 99 || h.Index != 13 || !errors.Is(err, ErrUnknownOp) {
		t.Fatalf("restore of a snapshot that applied op 99: %v; want a snapshot HaltError for op 99 at index 13", err)
	}
	if !strings.Contains(err.Error(), "restore the snapshot at index 13") || !strings.Contains(err.Error(), "must be upgraded") {
		t.Errorf("halt error %q does not say what it could not restore and what to do", err)
	}
	snap.OpsApplied = []uint32{13, 10}
	if _, err := FromSnapshot(snap); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("ops_applied out of order: %v, want ErrInvalidSnapshot", err)
	}
}
