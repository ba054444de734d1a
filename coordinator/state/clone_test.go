package state

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// fill sets every field of m (recursively, one element per list) to a value
// derived from seed, and fails on a field kind it does not know, so that a
// new field forces a look at clone.go.
func fill(t *testing.T, m protoreflect.Message, seed int) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		n := seed + i + 1
		switch {
		case f.IsList() && f.Kind() == protoreflect.MessageKind:
			l := m.Mutable(f).List()
			e := l.NewElement()
			fill(t, e.Message(), n)
			l.Append(e)
		case f.Kind() == protoreflect.MessageKind:
			fill(t, m.Mutable(f).Message(), n)
		case f.Kind() == protoreflect.DoubleKind:
			m.Set(f, protoreflect.ValueOfFloat64(float64(n)/100))
		case f.IsList() && f.Kind() == protoreflect.StringKind:
			m.Mutable(f).List().Append(protoreflect.ValueOfString(string(f.Name()) + string(rune('a'+n%26))))
		case f.Kind() == protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString(string(f.Name())+string(rune('a'+n%26))))
		case f.IsList() && f.Kind() == protoreflect.Uint32Kind:
			m.Mutable(f).List().Append(protoreflect.ValueOfUint32(uint32(n)))
		case f.Kind() == protoreflect.Uint32Kind:
			m.Set(f, protoreflect.ValueOfUint32(uint32(n)))
		case f.Kind() == protoreflect.Uint64Kind:
			m.Set(f, protoreflect.ValueOfUint64(uint64(n)))
		case f.Kind() == protoreflect.Int64Kind:
			m.Set(f, protoreflect.ValueOfInt64(int64(n)))
		case f.Kind() == protoreflect.BoolKind:
			m.Set(f, protoreflect.ValueOfBool(true))
		case f.Kind() == protoreflect.EnumKind:
			m.Set(f, protoreflect.ValueOfEnum(1))
		default:
			t.Fatalf("%s.%s: unexpected field kind %v; update clone.go and this test", m.Descriptor().Name(), f.Name(), f.Kind())
		}
	}
}

// TestCopiedFieldsAreComplete guards the hand-written copies and comparisons
// against fields added to the proto later.
func TestCopiedFieldsAreComplete(t *testing.T) {
	stamps := map[protoreflect.Name]bool{"create_revision": true, "mod_revision": true}
	tests := []struct {
		msg    proto.Message
		clone  func(proto.Message) proto.Message
		same   func(a, b proto.Message) bool
		ignore map[protoreflect.Name]bool // fields same() must not look at
	}{
		{&pb.Cell{}, func(m proto.Message) proto.Message { return cloneCell(m.(*pb.Cell)) },
			func(a, b proto.Message) bool { return sameCell(a.(*pb.Cell), b.(*pb.Cell)) }, stamps},
		{&pb.Placement{}, func(m proto.Message) proto.Message { return clonePlacement(m.(*pb.Placement)) },
			func(a, b proto.Message) bool { return samePlacement(a.(*pb.Placement), b.(*pb.Placement)) }, stamps},
		{&pb.Member{}, func(m proto.Message) proto.Message { return cloneMember(m.(*pb.Member)) },
			func(a, b proto.Message) bool { return sameMember(a.(*pb.Member), b.(*pb.Member)) }, nil},
		{&pb.Region{}, func(m proto.Message) proto.Message { return cloneRegions([]*pb.Region{m.(*pb.Region)})[0] },
			func(a, b proto.Message) bool {
				return sameRegions([]*pb.Region{a.(*pb.Region)}, []*pb.Region{b.(*pb.Region)})
			}, nil},
		{&pb.Latency{}, func(m proto.Message) proto.Message { return cloneLatencies([]*pb.Latency{m.(*pb.Latency)})[0] },
			func(a, b proto.Message) bool {
				return sameLatencies([]*pb.Latency{a.(*pb.Latency)}, []*pb.Latency{b.(*pb.Latency)})
			}, nil},
		{&pb.ApiKey{}, func(m proto.Message) proto.Message { return cloneKey(m.(*pb.ApiKey)) }, nil, nil},
		{&pb.Topology{}, func(m proto.Message) proto.Message {
			tp := m.(*pb.Topology)
			return newTopology(tp.Regions, tp.Latencies, tp.DefaultCell).proto()
		}, nil, nil},
	}
	for _, tc := range tests {
		name := string(tc.msg.ProtoReflect().Descriptor().Name())
		t.Run(name, func(t *testing.T) {
			full := tc.msg.ProtoReflect().New().Interface()
			fill(t, full.ProtoReflect(), 0)
			c := tc.clone(full)
			if !proto.Equal(full, c) {
				t.Fatalf("clone lost fields:\n%v\n%v", full, c)
			}
			if tc.same == nil {
				return
			}
			if !tc.same(full, c) {
				t.Fatal("a clone is not the same")
			}
			// Changing any one field (or a nested one) must make same() false,
			// except the fields it deliberately ignores.
			var walk func(m protoreflect.Message, path string)
			walk = func(m protoreflect.Message, path string) {
				fields := m.Descriptor().Fields()
				for i := 0; i < fields.Len(); i++ {
					f := fields.Get(i)
					if f.IsList() && f.Kind() != protoreflect.MessageKind {
						l := m.Mutable(f).List()
						old := l.Get(0)
						if f.Kind() == protoreflect.Uint32Kind {
							l.Set(0, protoreflect.ValueOfUint32(uint32(old.Uint())+100))
						} else {
							l.Set(0, protoreflect.ValueOfString(old.String()+"!"))
						}
						if got := tc.same(full, c); got != tc.ignore[f.Name()] {
							t.Errorf("same() = %v after changing %s%s", got, path, f.Name())
						}
						l.Set(0, old)
						continue
					}
					if f.IsList() {
						walk(m.Get(f).List().Get(0).Message(), path+string(f.Name())+".")
						continue
					}
					if f.Kind() == protoreflect.MessageKind {
						walk(m.Mutable(f).Message(), path+string(f.Name())+".")
						continue
					}
					old := m.Get(f)
					switch f.Kind() {
					case protoreflect.StringKind:
						m.Set(f, protoreflect.ValueOfString(old.String()+"!"))
					case protoreflect.Uint32Kind:
						m.Set(f, protoreflect.ValueOfUint32(uint32(old.Uint())+100))
					case protoreflect.Uint64Kind:
						m.Set(f, protoreflect.ValueOfUint64(old.Uint()+100))
					case protoreflect.DoubleKind:
						m.Set(f, protoreflect.ValueOfFloat64(old.Float()+1))
					case protoreflect.Int64Kind:
						m.Set(f, protoreflect.ValueOfInt64(old.Int()+100))
					case protoreflect.BoolKind:
						m.Set(f, protoreflect.ValueOfBool(!old.Bool()))
					case protoreflect.EnumKind:
						m.Set(f, protoreflect.ValueOfEnum(old.Enum()+1))
					}
					if got := tc.same(full, c); got != tc.ignore[f.Name()] {
						t.Errorf("same() = %v after changing %s%s", got, path, f.Name())
					}
					m.Set(f, old)
				}
			}
			walk(full.ProtoReflect(), "")
		})
	}
}
