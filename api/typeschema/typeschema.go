// Package typeschema derives JSON Schema (draft 2020-12, the dialect of
// OpenAPI 3.1) from Go types by reflection, describing exactly the JSON that
// encoding/json writes for them: field names and omitempty from the json
// tags, embedded structs flattened, pointers nullable, time.Time a
// date-time string.
//
// It refuses what it cannot describe truthfully (a custom MarshalJSON, a
// ",string" option, a non-string map key, channels and functions) instead
// of guessing: a wrong contract is worse than a missing one.
package typeschema

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Schema is one JSON Schema object, ready for encoding/json (maps encode
// with sorted keys, so a document built from them is stable byte for byte).
type Schema = map[string]any

// Mode says which side of the wire a type is on. A response field without
// omitempty is always present, so it is required; a request field may be
// left out (the server sees its zero value), so none is.
type Mode int

const (
	Response Mode = iota
	Request
)

// Config sets up a Generator.
type Config struct {
	// RefPrefix is put before a type's name in $ref, e.g.
	// "#/components/schemas/".
	RefPrefix string
	// Nullable names the slice and map fields that may be encoded as null,
	// as "Type.Field" (Go names, Type being the struct that declares the
	// field). Every other slice and map is documented as never null: the
	// handlers build them with make, and a test that validates real
	// responses catches one that is not.
	Nullable []string
}

// Generator collects the named struct types it has seen as definitions.
type Generator struct {
	cfg      Config
	defs     map[string]Schema
	seen     map[string]reflect.Type
	modes    map[string]Mode
	nullable map[string]bool
	used     map[string]bool
}

// New returns a Generator.
func New(cfg Config) *Generator {
	g := &Generator{cfg: cfg, defs: map[string]Schema{}, seen: map[string]reflect.Type{}, modes: map[string]Mode{},
		nullable: map[string]bool{}, used: map[string]bool{}}
	for _, n := range cfg.Nullable {
		g.nullable[n] = true
	}
	return g
}

// Defs returns the definitions of every named struct reached so far.
func (g *Generator) Defs() map[string]Schema { return g.defs }

// Unused lists Config.Nullable entries that named no field reached: a
// renamed field would otherwise silently turn non-null.
func (g *Generator) Unused() []string {
	var out []string
	for n := range g.nullable {
		if !g.used[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// For returns the schema of v's type: a $ref for a named struct (whose
// definition joins Defs), an inline schema otherwise.
func (g *Generator) For(v any, mode Mode) (Schema, error) {
	if v == nil {
		return nil, fmt.Errorf("typeschema: nil value has no type")
	}
	return g.schema(reflect.TypeOf(v), mode)
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

func (g *Generator) schema(t reflect.Type, mode Mode) (Schema, error) {
	if t.Kind() == reflect.Pointer {
		s, err := g.schema(t.Elem(), mode)
		return nullable(s), err
	}
	if t == timeType {
		return Schema{"type": "string", "format": "date-time"}, nil
	}
	if t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType) ||
		t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return nil, fmt.Errorf("typeschema: %s marshals itself; its JSON cannot be derived", t)
	}
	switch t.Kind() {
	case reflect.Bool:
		return Schema{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return Schema{"type": "integer"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Schema{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return Schema{"type": "number"}, nil
	case reflect.String:
		return Schema{"type": "string"}, nil
	case reflect.Interface:
		return Schema{}, nil
	case reflect.Slice, reflect.Array:
		return g.array(t, mode)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("typeschema: map key %s is not a string", t.Key())
		}
		v, err := g.schema(t.Elem(), mode)
		return Schema{"type": "object", "additionalProperties": v}, err
	case reflect.Struct:
		return g.structRef(t, mode)
	}
	return nil, fmt.Errorf("typeschema: %s has no JSON form", t)
}

func (g *Generator) array(t reflect.Type, mode Mode) (Schema, error) {
	if t.Elem().Kind() == reflect.Uint8 {
		// encoding/json writes byte slices as base64 text.
		return Schema{"type": "string", "contentEncoding": "base64"}, nil
	}
	items, err := g.schema(t.Elem(), mode)
	if err != nil {
		return nil, err
	}
	return Schema{"type": "array", "items": items}, nil
}

// nullable allows null besides s: by widening its type (every other keyword
// applies to that type only), else by anyOf.
func nullable(s Schema) Schema {
	if t, ok := s["type"].(string); ok {
		out := Schema{}
		for k, v := range s {
			out[k] = v
		}
		out["type"] = []string{t, "null"}
		return out
	}
	return Schema{"anyOf": []Schema{s, {"type": "null"}}}
}

// structRef defines a named struct once and refers to it; an anonymous
// struct is described inline.
func (g *Generator) structRef(t reflect.Type, mode Mode) (Schema, error) {
	name := t.Name()
	if name == "" {
		return g.object(t, mode)
	}
	if prev, ok := g.seen[name]; ok {
		if prev != t {
			return nil, fmt.Errorf("typeschema: two types named %s (%s, %s)", name, prev.PkgPath(), t.PkgPath())
		}
		if g.modes[name] != mode {
			return nil, fmt.Errorf("typeschema: %s is used both as a request and as a response", name)
		}
		return Schema{"$ref": g.cfg.RefPrefix + name}, nil
	}
	g.seen[name], g.modes[name] = t, mode
	obj, err := g.object(t, mode)
	if err != nil {
		delete(g.seen, name)
		return nil, err
	}
	g.defs[name] = obj
	return Schema{"$ref": g.cfg.RefPrefix + name}, nil
}

// object describes a struct as encoding/json writes it. Unknown properties
// are refused both ways: the API's decoder rejects them in requests, and a
// response field the schema does not name is an undocumented change.
func (g *Generator) object(t reflect.Type, mode Mode) (Schema, error) {
	fields, err := jsonFields(t)
	if err != nil {
		return nil, err
	}
	props := Schema{}
	required := []string{}
	for _, f := range fields {
		s, err := g.schema(f.typ, mode)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", f.owner, f.goName, err)
		}
		if k := f.typ.Kind(); k == reflect.Slice || k == reflect.Map {
			if key := f.owner + "." + f.goName; g.nullable[key] {
				g.used[key] = true
				s = nullable(s)
			}
		}
		props[f.name] = s
		if mode == Response && !f.optional {
			required = append(required, f.name)
		}
	}
	out := Schema{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	return out, nil
}

// field is one JSON member of a struct.
type field struct {
	name, goName, owner string
	typ                 reflect.Type
	optional            bool
	depth               int
}

// jsonFields lists a struct's JSON members in encoding order, with
// embedded structs flattened: the shallower of two same-named fields wins,
// and two at the same depth are an error (encoding/json would drop both).
func jsonFields(t reflect.Type) ([]field, error) {
	var all []field
	if err := collect(t, 0, &all); err != nil {
		return nil, err
	}
	byName := map[string]int{}
	var out []field
	for _, f := range all {
		i, dup := byName[f.name]
		switch {
		case !dup:
			byName[f.name] = len(out)
			out = append(out, f)
		case f.depth == out[i].depth:
			return nil, fmt.Errorf("typeschema: %s: field %q is ambiguous", t, f.name)
		case f.depth < out[i].depth:
			out[i] = f
		}
	}
	return out, nil
}

func collect(t reflect.Type, depth int, out *[]field) error {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			et := sf.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				if err := collect(et, depth+1, out); err != nil {
					return err
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		o := strings.Split(opts, ",")
		if slices.Contains(o, "string") {
			return fmt.Errorf("typeschema: %s.%s: the \",string\" option is not supported", t.Name(), sf.Name)
		}
		*out = append(*out, field{name: name, goName: sf.Name, owner: t.Name(), typ: sf.Type, depth: depth,
			optional: slices.Contains(o, "omitempty") || slices.Contains(o, "omitzero")})
	}
	return nil
}
