package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Load reads one routing config document from r. It checks the shape of the file
// (field names, types, one document, not empty) and nothing else: whether the
// regions, cells and placements fit together is the coordinators' call when the
// config is applied. Revision fields present in the file are kept as read; the
// coordinators ignore them.
func Load(r io.Reader) (*pb.RoutingConfig, error) {
	cfg := &pb.RoutingConfig{}
	if err := Decode(r, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Decode reads exactly one YAML or JSON document from r into m, replacing m's
// contents. Errors wrap ErrInvalid (see FieldError) except for a failure to read r.
// An empty document is an error, so that applying an empty file by mistake cannot
// clear the whole routing config.
func Decode(r io.Reader, m proto.Message) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &FieldError{Reason: "the document is empty"}
		}
		return fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return &FieldError{Line: extra.Line, Reason: "a second document follows the first; put one document in a file"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return &FieldError{Line: root.Line, Reason: "the document is empty"}
	}
	md := m.ProtoReflect().Descriptor()
	tree, err := toJSON(root, md, "")
	if err != nil {
		return err
	}
	js, err := json.Marshal(tree)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	proto.Reset(m)
	if err := protojson.Unmarshal(js, m); err != nil {
		// toJSON checks names, shapes and scalar syntax, so this is rare (a bad
		// base64 value, two members of one oneof); protojson's own positions refer
		// to the intermediate JSON, not the file, so they are dropped.
		return fmt.Errorf("%w: %s", ErrInvalid, trimProtoErr(err))
	}
	return nil
}

// toJSON converts a YAML mapping into the JSON value protojson expects for md,
// checking every field against the descriptor so that errors carry YAML lines.
func toJSON(n *yaml.Node, md protoreflect.MessageDescriptor, path string) (any, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		// Well-known types have special JSON forms; take the value as written.
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fieldErr(n, path, "%v", err)
		}
		return v, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fieldErr(n, path, "want a mapping of %s fields, got %s", md.Name(), describe(n))
	}
	out := make(map[string]any, len(n.Content)/2)
	seen := make(map[protoreflect.FieldNumber]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fieldErr(k, path, "a field name must be plain text, got %s", describe(k))
		}
		fd := md.Fields().ByName(protoreflect.Name(k.Value))
		if fd == nil {
			fd = md.Fields().ByJSONName(k.Value)
		}
		fpath := joinPath(path, k.Value)
		if fd == nil {
			return nil, fieldErr(k, fpath, "unknown field %q (%s has: %s)", k.Value, md.Name(), fieldNames(md))
		}
		if first, dup := seen[fd.Number()]; dup {
			return nil, fieldErr(k, fpath, "field %q is given twice (first on line %d)", fd.Name(), first)
		}
		seen[fd.Number()] = k.Line
		fpath = joinPath(path, string(fd.Name()))
		val, err := fieldToJSON(v, fd, fpath)
		if err != nil {
			return nil, err
		}
		if val != nil {
			out[string(fd.Name())] = val
		}
	}
	return out, nil
}

func fieldToJSON(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) (any, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	switch {
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			return nil, fieldErr(n, path, "want a list, got %s", describe(n))
		}
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := singularToJSON(e, fd, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if v == nil {
				return nil, fieldErr(e, fmt.Sprintf("%s[%d]", path, i), "a list item cannot be empty")
			}
			out = append(out, v)
		}
		return out, nil
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			return nil, fieldErr(n, path, "want a mapping, got %s", describe(n))
		}
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolve(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				return nil, fieldErr(k, path, "a map key must be plain text, got %s", describe(k))
			}
			v, err := singularToJSON(n.Content[i+1], fd.MapValue(), fmt.Sprintf("%s[%q]", path, k.Value))
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	default:
		return singularToJSON(n, fd, path)
	}
}

func singularToJSON(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) (any, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return toJSON(n, fd.Message(), path)
	}
	if n.Kind != yaml.ScalarNode {
		return nil, fieldErr(n, path, "want a single value, got %s", describe(n))
	}
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		// Whatever YAML thinks the scalar is, a string field takes its text.
		return n.Value, nil
	case protoreflect.BoolKind:
		var b bool
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			return nil, fieldErr(n, path, "want true or false, got %q", n.Value)
		}
		return b, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return intToJSON(n, path, math.MinInt32, math.MaxInt32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return intToJSON(n, path, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return uintToJSON(n, path, math.MaxUint32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return uintToJSON(n, path, math.MaxUint64)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fieldErr(n, path, "want a number, got %q", n.Value)
		}
		switch {
		case math.IsNaN(f):
			return "NaN", nil
		case math.IsInf(f, 1):
			return "Infinity", nil
		case math.IsInf(f, -1):
			return "-Infinity", nil
		}
		return f, nil
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.Values().ByName(protoreflect.Name(n.Value)) != nil {
			return n.Value, nil
		}
		if num, err := strconv.ParseInt(n.Value, 10, 32); err == nil {
			return json.Number(strconv.FormatInt(num, 10)), nil
		}
		names := make([]string, 0, ed.Values().Len())
		for i := 0; i < ed.Values().Len(); i++ {
			names = append(names, string(ed.Values().Get(i).Name()))
		}
		return nil, fieldErr(n, path, "unknown value %q (one of: %s)", n.Value, strings.Join(names, ", "))
	}
	return nil, fieldErr(n, path, "unsupported field kind %s", fd.Kind())
}

func intToJSON(n *yaml.Node, path string, lo, hi int64) (any, error) {
	var v int64
	if err := n.Decode(&v); err != nil {
		// Quoted numbers are accepted, as protojson accepts them.
		p, perr := strconv.ParseInt(n.Value, 10, 64)
		if perr != nil {
			return nil, fieldErr(n, path, "want a whole number, got %q", n.Value)
		}
		v = p
	}
	if v < lo || v > hi {
		return nil, fieldErr(n, path, "%d is out of range [%d, %d]", v, lo, hi)
	}
	return json.Number(strconv.FormatInt(v, 10)), nil
}

func uintToJSON(n *yaml.Node, path string, hi uint64) (any, error) {
	var v uint64
	if err := n.Decode(&v); err != nil {
		p, perr := strconv.ParseUint(n.Value, 10, 64)
		if perr != nil {
			return nil, fieldErr(n, path, "want a whole number of at least 0, got %q", n.Value)
		}
		v = p
	}
	if v > hi {
		return nil, fieldErr(n, path, "%d is larger than %d", v, hi)
	}
	return json.Number(strconv.FormatUint(v, 10)), nil
}

// resolve follows YAML aliases (*anchor) to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" || n.Kind == 0
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func fieldNames(md protoreflect.MessageDescriptor) string {
	names := make([]string, 0, md.Fields().Len())
	for i := 0; i < md.Fields().Len(); i++ {
		names = append(names, string(md.Fields().Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func trimProtoErr(err error) string {
	msg := strings.TrimPrefix(err.Error(), "proto:")
	msg = strings.TrimSpace(msg)
	// "(line 1:23): ..." positions refer to the intermediate JSON.
	if strings.HasPrefix(msg, "(line ") {
		if i := strings.Index(msg, "): "); i >= 0 {
			msg = msg[i+3:]
		}
	}
	return msg
}
