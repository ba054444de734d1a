package state

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// opSpec is everything the state machine knows about one case of
// Command.op. The registry below is the only place an op is wired in: add
// the case to command.proto, a line here, and the handler.
type opSpec struct {
	// name is the oneof case's field name in command.proto ("rotate_key").
	name protoreflect.Name
	// apply runs the op in tx; it is only called with a command carrying
	// this case.
	apply func(tx *txn, cmd *pb.Command) ([]*pb.Event, *pb.CommandError)
	// config: the op changes cells, so after a change the endpoint states
	// (breakers, health) must follow the config.
	config bool
	// ignorable: a member whose binary does not know the op may skip it and
	// go on applying (Consul's IgnoreUnknownTypeFlag). Only an op whose
	// effect no older binary reads or serves may be ignorable: a member that
	// skips it never gets that effect, not even after an upgrade (it does
	// not replay what it skipped). The leader stamps it on the command
	// (Command.ignorable). No op is ignorable today.
	ignorable bool
}

// opTable is the registry's source: one entry per case of Command.op.
// TestRegistryCoversEveryOp fails when a case has no entry.
func opTable() []opSpec {
	return []opSpec{
		{name: "apply_config", config: true, apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.applyConfig(c.GetApplyConfig().GetConfig())
		}},
		{name: "put_cell", config: true, apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.putCell(c.GetPutCell().GetCell())
		}},
		{name: "delete_cell", config: true, apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.deleteCell(c.GetDeleteCell().GetId())
		}},
		{name: "put_placement", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.putPlacement(c.GetPutPlacement().GetPlacement())
		}},
		{name: "delete_placement", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.deletePlacement(c.GetDeletePlacement().GetKey())
		}},
		{name: "put_member", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.putMember(c.GetPutMember().GetMember())
		}},
		{name: "delete_member", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.deleteMember(c.GetDeleteMember().GetName())
		}},
		{name: "report_outcomes", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.reportOutcomes(c.GetReportOutcomes())
		}},
		{name: "report_health", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.reportHealth(c.GetReportHealth())
		}},
		{name: "tick", apply: func(tx *txn, _ *pb.Command) ([]*pb.Event, *pb.CommandError) {
			tx.reapNonces()
			tx.reapReports()
			return tx.tick(), nil
		}},
		{name: "grant_probe", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.grantProbe(c.GetGrantProbe())
		}},
		{name: "probe_result", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.probeResult(c.GetProbeResult())
		}},
		{name: "reset_breaker", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.resetBreaker(c.GetResetBreaker())
		}},
		{name: "create_key", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.createKey(c.GetCreateKey())
		}},
		{name: "revoke_key", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.revokeKey(c.GetRevokeKey())
		}},
		{name: "rotate_key", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.rotateKey(c.GetRotateKey())
		}},
		{name: "check_nonces", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.checkNonces(c.GetCheckNonces())
		}},
		{name: "init_cluster", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.initCluster(c.GetInitCluster())
		}},
		{name: "report_batch", apply: func(tx *txn, c *pb.Command) ([]*pb.Event, *pb.CommandError) {
			return tx.reportBatch(c.GetReportBatch()), nil
		}},
	}
}

// registry maps the cases of Command.op, by field number, to their specs.
// It is built once and never changes.
type registry struct {
	oneof protoreflect.OneofDescriptor
	// specs holds the ops this binary applies: every entry of the table
	// except the withheld ones.
	specs map[protoreflect.FieldNumber]*opSpec
	// numbers is the keys of specs, ascending: what a member advertises.
	numbers []uint32
}

// ops is this binary's registry (immutable).
var ops = newRegistry(opTable(), withheldOps())

// newRegistry indexes table by field number. It panics (at start, like
// Consul's registration) when an entry names no case of Command.op or names
// one twice: both are programming errors that a test run catches.
func newRegistry(table []opSpec, withheld []protoreflect.Name) *registry {
	oneof := (&pb.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	r := &registry{oneof: oneof, specs: map[protoreflect.FieldNumber]*opSpec{}}
	seen := map[protoreflect.Name]bool{}
	for i := range table {
		spec := &table[i]
		fd := oneof.Fields().ByName(spec.name)
		if fd == nil || fd.ContainingOneof() != oneof {
			panic(fmt.Sprintf("state: registry entry %q is not a case of Command.op", spec.name))
		}
		if seen[spec.name] {
			panic(fmt.Sprintf("state: registry has %q twice", spec.name))
		}
		seen[spec.name] = true
		if slices.Contains(withheld, spec.name) {
			continue
		}
		r.specs[fd.Number()] = spec
		r.numbers = append(r.numbers, uint32(fd.Number()))
	}
	slices.Sort(r.numbers)
	return r
}

// Op is the operation a command carries, as this binary sees it.
type Op struct {
	// Number is the op's field number in Command (a case of Command.op),
	// also when this binary does not know the op; 0 when the command
	// carries no op at all.
	Number protoreflect.FieldNumber
	// Name is the case's name ("rotate_key"), or "op <number>" when the
	// proto this binary was built with does not have it.
	Name string
	// Known reports whether this binary applies the op.
	Known bool
	// Ignorable is the registry's flag for a known op (what the leader
	// stamps on the command); false for an unknown one.
	Ignorable bool
}

// OpOf returns the op cmd carries. An op this binary's proto does not have
// is found among cmd's unknown fields: the first one numbered 10 or above
// (command.proto keeps lower numbers for the envelope).
func OpOf(cmd *pb.Command) Op {
	op, _ := ops.lookup(cmd)
	return op
}

func (r *registry) lookup(cmd *pb.Command) (Op, *opSpec) {
	m := cmd.ProtoReflect()
	if fd := m.WhichOneof(r.oneof); fd != nil {
		spec := r.specs[fd.Number()]
		op := Op{Number: fd.Number(), Name: string(fd.Name()), Known: spec != nil}
		if spec != nil {
			op.Ignorable = spec.ignorable
		}
		return op, spec
	}
	n := firstOpField(m.GetUnknown())
	if n == 0 {
		return Op{}, nil
	}
	return opNamed(n), nil
}

// opNamed describes op n, which this binary does not apply: by its case
// name when its proto has one (a withheld op), else by number.
func opNamed(n protoreflect.FieldNumber) Op {
	if fd := ops.oneof.Fields().ByNumber(n); fd != nil {
		return Op{Number: n, Name: string(fd.Name())}
	}
	return Op{Number: n, Name: fmt.Sprintf("op %d", n)}
}

// firstOpField returns the number of the first field of b numbered 10 or
// above, or 0.
func firstOpField(b []byte) protoreflect.FieldNumber {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return 0
		}
		if num >= firstOpNumber {
			return num
		}
		b = b[n+m:]
	}
	return 0
}

// firstOpNumber is the lowest field number an op may have (command.proto).
const firstOpNumber = 10

// Ops returns the field numbers of the ops this binary applies, ascending:
// what a member advertises in its record (Member.ops). The caller owns the
// slice.
func Ops() []uint32 { return slices.Clone(ops.numbers) }

// legacyOps are the ops of every binary that advertises none (Member.ops
// empty): the binaries from before the field, which apply fields 10 to 27.
const (
	legacyFirst protoreflect.FieldNumber = 10
	legacyLast  protoreflect.FieldNumber = 27
)

// MemberApplies reports whether the binary of the member whose record is m
// applies op n, as far as the record tells: its advertised ops, or, for a
// record that advertises none (or no record, nil), the legacy set 10-27.
func MemberApplies(m *pb.Member, n protoreflect.FieldNumber) bool {
	if len(m.GetOps()) == 0 {
		return n >= legacyFirst && n <= legacyLast
	}
	_, found := slices.BinarySearch(m.GetOps(), uint32(n))
	return found
}

// MembersLacking returns, in the order given, the names whose member record
// (or absence of one) says their binary does not apply op n.
func (v View) MembersLacking(n protoreflect.FieldNumber, names []string) []string {
	members := v.t.members
	var out []string
	for _, name := range names {
		m, _ := members.Get(name)
		if !MemberApplies(m, n) {
			out = append(out, name)
		}
	}
	return out
}

// EveryMemberApplies reports whether op n is one every member record, and
// every member without one, applies: n is in the legacy set and no record
// leaves it out. When it holds, no member can lack n whatever the raft
// configuration, so a proposer need not read the configuration.
func (v View) EveryMemberApplies(n protoreflect.FieldNumber) bool {
	if n < legacyFirst || n > legacyLast {
		return false
	}
	all := true
	v.t.members.Scan(func(_ string, m *pb.Member) bool {
		all = MemberApplies(m, n)
		return all
	})
	return all
}
