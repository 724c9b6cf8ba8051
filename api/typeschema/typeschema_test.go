package typeschema_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/typeschema"
)

type inner struct {
	N int `json:"n"`
}

type Base struct {
	ID   string `json:"id"`
	Note string `json:"note,omitempty"`
}

type withEmbed struct {
	Base
	Note  string   `json:"note"` // shallower: wins over Base.Note
	Warns []string `json:"warnings,omitempty"`
}

type kinds struct {
	B     bool              `json:"b"`
	I     int64             `json:"i"`
	U     uint8             `json:"u"`
	F     float64           `json:"f"`
	S     string            `json:"s"`
	T     time.Time         `json:"t"`
	TP    *time.Time        `json:"tp,omitempty"`
	Z     time.Time         `json:"z,omitzero"`
	D     time.Duration     `json:"d"`
	Raw   []byte            `json:"raw"`
	M     map[string]int    `json:"m"`
	L     []inner           `json:"l"`
	Null  []string          `json:"null"`
	P     *inner            `json:"p"`
	Any   any               `json:"any"`
	Anon  struct{ X int }   `json:"anon"`
	Skip  string            `json:"-"`
	Plain string            //nolint:unused // no tag: named as in Go
	priv  string            //nolint:unused // unexported: not encoded
	Lab   map[string]string `json:"labels"`
}

type marshals struct{}

func (marshals) MarshalJSON() ([]byte, error) { return []byte(`1`), nil }

type ambiguousA struct {
	X int
}
type ambiguousB struct {
	X string
}
type ambiguous struct {
	ambiguousA
	ambiguousB
}

func gen(t *testing.T, v any, mode typeschema.Mode, nullable ...string) (string, *typeschema.Generator) {
	t.Helper()
	g := typeschema.New(typeschema.Config{RefPrefix: "#/$defs/", Nullable: nullable})
	s, err := g.For(v, mode)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"root": s, "defs": g.Defs()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b), g
}

func TestSchemas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		v        any
		mode     typeschema.Mode
		nullable []string
		want     string
	}{
		{"scalar", 3, typeschema.Response, nil, `{"defs":{},"root":{"type":"integer"}}`},
		{"embedded flattened, shallow wins, omitempty optional", withEmbed{}, typeschema.Response, nil,
			`{"defs":{"withEmbed":{"additionalProperties":false,"properties":{"id":{"type":"string"},"note":{"type":"string"},"warnings":{"items":{"type":"string"},"type":"array"}},"required":["id","note"],"type":"object"}},"root":{"$ref":"#/$defs/withEmbed"}}`},
		{"request: nothing required", withEmbed{}, typeschema.Request, nil,
			`{"defs":{"withEmbed":{"additionalProperties":false,"properties":{"id":{"type":"string"},"note":{"type":"string"},"warnings":{"items":{"type":"string"},"type":"array"}},"type":"object"}},"root":{"$ref":"#/$defs/withEmbed"}}`},
		{"every kind", kinds{}, typeschema.Response, []string{"kinds.Null"},
			`{"defs":{"inner":{"additionalProperties":false,"properties":{"n":{"type":"integer"}},"required":["n"],"type":"object"},` +
				`"kinds":{"additionalProperties":false,"properties":{"Plain":{"type":"string"},"anon":{"additionalProperties":false,"properties":{"X":{"type":"integer"}},"required":["X"],"type":"object"},` +
				`"any":{},"b":{"type":"boolean"},"d":{"type":"integer"},"f":{"type":"number"},"i":{"type":"integer"},"l":{"items":{"$ref":"#/$defs/inner"},"type":"array"},` +
				`"labels":{"additionalProperties":{"type":"string"},"type":"object"},"m":{"additionalProperties":{"type":"integer"},"type":"object"},` +
				`"null":{"items":{"type":"string"},"type":["array","null"]},"p":{"anyOf":[{"$ref":"#/$defs/inner"},{"type":"null"}]},` +
				`"raw":{"contentEncoding":"base64","type":"string"},"s":{"type":"string"},"t":{"format":"date-time","type":"string"},` +
				`"tp":{"format":"date-time","type":["string","null"]},"u":{"minimum":0,"type":"integer"},"z":{"format":"date-time","type":"string"}},` +
				`"required":["b","i","u","f","s","t","d","raw","m","l","null","p","any","anon","Plain","labels"],"type":"object"}},"root":{"$ref":"#/$defs/kinds"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, g := gen(t, tc.v, tc.mode, tc.nullable...)
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if u := g.Unused(); len(u) != 0 {
				t.Errorf("unused nullable entries %v", u)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	type stringOpt struct {
		N int `json:"n,string"`
	}
	type intKeys struct {
		M map[int]string `json:"m"`
	}
	type fn struct {
		F func() `json:"f"`
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"custom MarshalJSON", marshals{}, "marshals itself"},
		{",string option", stringOpt{}, `",string"`},
		{"int map key", intKeys{}, "not a string"},
		{"func field", fn{}, "no JSON form"},
		{"ambiguous embedded names", ambiguous{}, "ambiguous"},
		{"nil", nil, "nil value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := typeschema.New(typeschema.Config{}).For(tc.v, typeschema.Response)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestModeClashAndUnusedNullable(t *testing.T) {
	g := typeschema.New(typeschema.Config{Nullable: []string{"inner.N", "inner.Gone"}})
	if _, err := g.For(inner{}, typeschema.Response); err != nil {
		t.Fatal(err)
	}
	if _, err := g.For(inner{}, typeschema.Request); err == nil || !strings.Contains(err.Error(), "both as a request and as a response") {
		t.Errorf("same type as request and response: %v", err)
	}
	// inner.N is an int, not a slice or map: naming it does nothing, so it
	// is reported with the missing field.
	if u := g.Unused(); strings.Join(u, ",") != "inner.Gone,inner.N" {
		t.Errorf("Unused() = %v", u)
	}
}
