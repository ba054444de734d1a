package configfile

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Format is a machine-readable output encoding, as chosen with -o.
type Format string

// The formats EncodeMessage writes.
const (
	// FormatJSON is the canonical proto3 JSON mapping with proto (snake_case) field
	// names, every field present, indented. As in that mapping (and grpcurl), 64-bit
	// integers are JSON strings.
	FormatJSON Format = "json"
	// FormatYAML has the same fields as FormatJSON, in proto field order, with
	// 64-bit integers as plain numbers.
	FormatYAML Format = "yaml"
)

// Marshal renders cfg as the YAML file that Load reads back into an equal config:
// snake_case names in proto field order, unset fields left out, and the
// create_revision and mod_revision stamps left out, so that
// `edgecell get config -o yaml | edgecell apply -f -` round-trips. cfg is not modified.
func Marshal(cfg *pb.RoutingConfig) ([]byte, error) {
	return encodeYAML(unstamped(cfg), false)
}

// MarshalJSON is Marshal in JSON (indented, snake_case, unset fields left out),
// for `edgecell get config -o json`. Load reads it back.
func MarshalJSON(cfg *pb.RoutingConfig) ([]byte, error) {
	return encodeJSON(unstamped(cfg), false)
}

// unstamped is a copy of cfg without the revision stamps the coordinators set.
func unstamped(cfg *pb.RoutingConfig) *pb.RoutingConfig {
	c := proto.CloneOf(cfg)
	for _, cell := range c.GetCells() {
		cell.CreateRevision, cell.ModRevision = 0, 0
	}
	for _, p := range c.GetPlacements() {
		p.CreateRevision, p.ModRevision = 0, 0
	}
	return c
}

// EncodeMessage renders any API message in format f for scripts. Every field is
// present, with its zero value when unset, so that a script can rely on a key
// existing. The output ends with a newline.
func EncodeMessage(m proto.Message, f Format) ([]byte, error) {
	switch f {
	case FormatJSON:
		return encodeJSON(m, true)
	case FormatYAML:
		return encodeYAML(m, true)
	}
	return nil, fmt.Errorf("unknown output format %q (want json or yaml)", f)
}

func encodeJSON(m proto.Message, emitUnpopulated bool) ([]byte, error) {
	compact, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: emitUnpopulated}.Marshal(m)
	if err != nil {
		return nil, err
	}
	// protojson varies its whitespace on purpose; re-indent for stable output.
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func encodeYAML(m proto.Message, emitUnpopulated bool) ([]byte, error) {
	e := yamlEncoder{emitUnpopulated: emitUnpopulated}
	root, err := e.message(m.ProtoReflect())
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// yamlEncoder builds YAML nodes from protobuf reflection rather than going through
// JSON, so that fields keep their proto order and 64-bit integers stay numbers.
type yamlEncoder struct {
	emitUnpopulated bool
}

func (e yamlEncoder) message(m protoreflect.Message) (*yaml.Node, error) {
	md := m.Descriptor()
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		// Well-known types keep their special JSON forms (timestamps as text, ...).
		js, err := protojson.Marshal(m.Interface())
		if err != nil {
			return nil, err
		}
		var n yaml.Node
		if err := yaml.Unmarshal(js, &n); err != nil {
			return nil, err
		}
		return n.Content[0], nil
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		has := m.Has(fd)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && !has {
			continue // an unset oneof member says nothing
		}
		if !has && !e.emitUnpopulated {
			continue
		}
		v, err := e.field(m, fd)
		if err != nil {
			return nil, err
		}
		out.Content = append(out.Content, str(string(fd.Name())), v)
	}
	return out, nil
}

func (e yamlEncoder) field(m protoreflect.Message, fd protoreflect.FieldDescriptor) (*yaml.Node, error) {
	switch {
	case fd.IsList():
		list := m.Get(fd).List()
		out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if list.Len() == 0 {
			out.Style = yaml.FlowStyle // "[]"
		}
		for i := 0; i < list.Len(); i++ {
			v, err := e.singular(fd, list.Get(i))
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, v)
		}
		return out, nil
	case fd.IsMap():
		mp := m.Get(fd).Map()
		type entry struct {
			key string
			val protoreflect.Value
		}
		entries := make([]entry, 0, mp.Len())
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			entries = append(entries, entry{k.String(), v})
			return true
		})
		sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
		out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if len(entries) == 0 {
			out.Style = yaml.FlowStyle // "{}"
		}
		for _, en := range entries {
			v, err := e.singular(fd.MapValue(), en.val)
			if err != nil {
				return nil, err
			}
			out.Content = append(out.Content, str(en.key), v)
		}
		return out, nil
	case fd.Message() != nil && !m.Has(fd):
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return e.singular(fd, m.Get(fd))
}

func (e yamlEncoder) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) (*yaml.Node, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.message(v.Message())
	case protoreflect.StringKind:
		return str(v.String()), nil
	case protoreflect.BytesKind:
		return str(base64.StdEncoding.EncodeToString(v.Bytes())), nil
	case protoreflect.BoolKind:
		return scalar("!!bool", strconv.FormatBool(v.Bool())), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return scalar("!!int", strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		switch {
		case math.IsNaN(f):
			return scalar("!!float", ".nan"), nil
		case math.IsInf(f, 1):
			return scalar("!!float", ".inf"), nil
		case math.IsInf(f, -1):
			return scalar("!!float", "-.inf"), nil
		}
		return scalar("!!float", strconv.FormatFloat(f, 'g', -1, 64)), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return str(string(ev.Name())), nil
		}
		return scalar("!!int", strconv.FormatInt(int64(v.Enum()), 10)), nil
	}
	return nil, fmt.Errorf("configfile: unsupported field kind %s in %s", fd.Kind(), fd.FullName())
}

// str is a string scalar; the encoder quotes it when YAML would read it otherwise
// ("123", "true", "null").
func str(s string) *yaml.Node { return scalar("!!str", s) }

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}
