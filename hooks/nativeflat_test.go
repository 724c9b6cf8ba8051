package hooks

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzNativeFlat checks the native endpoint's flat decoder against the
// encoding/json decoder it shortcuts: whatever nativeFlat accepts, the
// reference (DisallowUnknownFields) must accept too, with the same request.
func FuzzNativeFlat(f *testing.F) {
	for _, s := range []string{
		`{"action":"connect","client_id":"dev1","identity":"dev1","certificate_der":"MIIB"}`,
		`{"action":"publish","client_id":"dev1","identity":"dev1","topic":"a/b","qos":1,"retain":true}`,
		`{"action":"read","client_id":"d","identity":"d","topic":"t","qos":-0,"retain":false}`,
		`{"Action":"connect"}`, `{"action":5}`, `{"qos":"1"}`, `{"qos":1.0}`, `{"qos":1e0}`, `{"qos":99999999999999999999}`,
		`{"retain":null}`, `{"action":null}`, `{"retain":"true"}`, `{"extra":"x"}`, `{"action":"a"} x`,
		`{"action":"a","action":"b"}`, `{"topic":"\u00e9\n"}`, `{"topic":"\x80"}`, `{}`, `[]`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := nativeFlat([]byte(in))
		if !ok {
			return
		}
		var ref NativeRequest
		dec := json.NewDecoder(strings.NewReader(in))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ref); err != nil {
			t.Fatalf("nativeFlat accepted %q, encoding/json: %v", in, err)
		}
		if got != ref {
			t.Fatalf("%q: flat %+v, encoding/json %+v", in, got, ref)
		}
	})
}

// TestNativeFlatTakesCommonBodies: the bodies the plugin sends take the
// flat path, and bodies it cannot decide exactly fall back.
func TestNativeFlatTakesCommonBodies(t *testing.T) {
	for _, tc := range []struct {
		body string
		flat bool
	}{
		{`{"action":"connect","client_id":"dev1","identity":"dev1","certificate_der":"MIIB"}`, true},
		{`{"action":"publish","client_id":"dev1","identity":"dev1","topic":"a/b","qos":1,"retain":false}`, true},
		{`{"Action":"connect"}`, false},
		{`{"qos":"1"}`, false},
		{`{"qos":1.5}`, false},
		{`{"retain":null}`, false},
		{`{"action":7}`, false},
		{`{"unknown":"x"}`, false},
		{`{"action":"a"} {}`, false},
	} {
		if _, ok := nativeFlat([]byte(tc.body)); ok != tc.flat {
			t.Errorf("%s: flat=%v, want %v", tc.body, ok, tc.flat)
		}
	}
}
