package hooks

import (
	"encoding/json"
	"testing"
)

// FuzzFlatObject checks the fast decoder against encoding/json: whenever it
// accepts an input, encoding/json must accept it too and agree on every
// member (last duplicate wins in both).
func FuzzFlatObject(f *testing.F) {
	for _, s := range []string{
		`{"clientid":"dev1","qos":"1","retain":false,"n":null,"x":-1.5e3}`,
		`{}`, ` { "a" : "b" } `, `{"a":"\u00e9\n\"q\""}`, `{"a":{"b":1}}`, `{"a":[1]}`, `{"a":tru}`,
		`{"a":"b",}`, `{"a" "b"}`, `{"a":"\x00"}`, `{"a":1}x`, `{"a":"b","a":"c"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := map[string]string{}
		quoted := map[string]bool{}
		if !flatObject([]byte(in), func(k, v string, q bool) { got[k], quoted[k] = v, q }) {
			return
		}
		var ref map[string]any
		if err := json.Unmarshal([]byte(in), &ref); err != nil {
			t.Fatalf("flatObject accepted %q, encoding/json: %v", in, err)
		}
		if len(ref) != len(got) {
			t.Fatalf("%q: %d members, encoding/json %d", in, len(got), len(ref))
		}
		for k, rv := range ref {
			gv, ok := got[k]
			if !ok {
				t.Fatalf("%q: member %q missing", in, k)
			}
			if _, isString := rv.(string); isString != quoted[k] {
				t.Fatalf("%q: %q quoted=%v, encoding/json %T", in, k, quoted[k], rv)
			}
			switch rv := rv.(type) {
			case string:
				if gv != rv {
					t.Fatalf("%q: %q = %q, encoding/json %q", in, k, gv, rv)
				}
			default:
				var lit any
				if err := json.Unmarshal([]byte(gv), &lit); err != nil || lit != rv {
					t.Fatalf("%q: %q literal %q, encoding/json %v", in, k, gv, rv)
				}
			}
		}
	})
}
