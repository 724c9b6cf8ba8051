package hooks

import (
	"bufio"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func strip(in string, max int64) (string, error) {
	b, err := stripPayload(bufio.NewReader(strings.NewReader(in)), max)
	return string(b), err
}

func TestStripPayload(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"topic":"t","payload":"MjEuNQ==","retain":false}`, `{"topic":"t","payload":null,"retain":false}`},
		{`{ "payload" : "a\"b\\" , "x":1}`, `{ "payload" : null , "x":1}`},
		{`{"payload":null}`, `{"payload":null}`},
		{`{"payload":12}`, `{"payload":12}`},
		{`{"payload":[],"a":"b"}`, `{"payload":[],"a":"b"}`},
		{`{"payload":{"payload":"x"},"a":"b"}`, `{"payload":{"payload":"x"},"a":"b"}`},
		{`{"a":"payload","b":"c"}`, `{"a":"payload","b":"c"}`},
		{`{"a":["payload","c"]}`, `{"a":["payload","c"]}`},
		{`{"pay\u006coad":"x"}`, `{"pay\u006coad":"x"}`},
		{`{"payloads":"x","payloa":"y"}`, `{"payloads":"x","payloa":"y"}`},
		{`["payload","x"]`, `["payload","x"]`},
		{`{"topics":[{"topic":"a"}],"payload":"x"}`, `{"topics":[{"topic":"a"}],"payload":null}`},
	} {
		got, err := strip(tc.in, 1<<10)
		if err != nil || got != tc.want {
			t.Errorf("strip(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := strip(`{"payload":"`+strings.Repeat("A", 4<<10)+`","a":"b"}`, 64); err != nil {
		t.Errorf("payload counted against the cap: %v", err)
	}
	if _, err := strip(`{"a":"`+strings.Repeat("A", 100)+`"}`, 64); err == nil {
		t.Error("body over the cap accepted")
	}
	if _, err := strip(`{"payload":"AAAA`, 64); err == nil {
		t.Error("cut-short payload accepted")
	}
}

// FuzzStripPayload: whenever the input is one JSON object, the stripped copy
// is too, and equals it with a top-level string "payload" set to null.
func FuzzStripPayload(f *testing.F) {
	for _, s := range []string{
		`{"topic":"t","payload":"MjEuNQ==","retain":false}`, `{"payload":{"payload":"x"}}`,
		`{"payload":[],"a":"b"}`, `{"a":"b\"payload","payload":"\\"}`, `{"payload":"x","payload":"y"}`,
		`[{"payload":"x"}]`, `{"pay\u006coad":"x"}`, `{"a":{"b":[1,"payload"]},"payload":"z"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := strip(in, 1<<20)
		var orig map[string]any
		if json.Unmarshal([]byte(in), &orig) != nil || strings.Contains(in, `\u`) {
			// Not an object, or a member name the decoder may unescape
			// to "payload" (left in place: an unknown member to VerneMQ's
			// decoder too, harmless either way).
			return
		}
		if err != nil {
			t.Fatalf("strip(%q): %v", in, err)
		}
		var stripped map[string]any
		if e := json.Unmarshal([]byte(got), &stripped); e != nil {
			t.Fatalf("strip(%q) = %q: not JSON: %v", in, got, e)
		}
		if _, ok := orig["payload"].(string); ok {
			orig["payload"] = nil
		}
		if !reflect.DeepEqual(orig, stripped) {
			t.Fatalf("strip(%q) = %q", in, got)
		}
	})
}

// vmqDecodeBoth decodes a body the way the VerneMQ hook does (payload
// stripped) and straight with encoding/json. ok is false when the stripped
// path refused the body (a deny, which is always safe).
func vmqDecodeBoth(t *testing.T, in string) (stripped, direct vmqRequest, ok bool) {
	t.Helper()
	b, err := stripPayload(bufio.NewReader(strings.NewReader(in)), 1<<20)
	if err != nil || !utf8.Valid(b) || decodeObject(b, &stripped) != nil {
		return stripped, direct, false
	}
	if json.Unmarshal([]byte(in), &direct) != nil {
		// Only the payload's own text can make the original invalid
		// (raw control bytes, bad escapes): nothing to compare with.
		return stripped, direct, false
	}
	return stripped, direct, true
}

// TestStripPayloadDifferential: whatever the payload holds or where it
// stands, the fields decided on (username, client id, topic, topics, qos,
// retain, listener type, mountpoint) are those encoding/json reads from the
// full body — or the body is refused.
func TestStripPayloadDifferential(t *testing.T) {
	const head = `{"username":"dev1","mountpoint":"","client_id":"dev1","qos":1,`
	for _, in := range []string{
		head + `"topic":"a/b","payload":"\",\"topic\":\"evil\",\"x\":\"","retain":false}`,
		head + `"payload":"\",\"topic\":\"evil","topic":"a/b","retain":false}`,
		head + `"topic":"a/b","payload":"x\\","topic":"second","retain":false}`,
		head + `"topic":"a/b","payload":"x\\\"","retain":false,"topic":"dup"}`,
		head + `"topic":"a/b","pay\u006coad":"\",\"topic\":\"evil","retain":false}`,
		head + `"topic":"a/b","payload":{"topic":"evil","payload":"x"},"retain":false}`,
		head + `"topic":"a/b","payload":["topic","evil"],"retain":false}`,
		head + `"topic":"a/b","payload":"\u0022,\"topic\":\"evil","retain":false}`,
		head + `"topic":"a/b","payload":"` + "\xff\xfe\x80\"" + `,"retain":false}`,
		head + `"topic":"a/b","payload":"ok","retain":false,"username":"other"}`,
		`{"payload":"x","username":"dev2","topic":"t","qos":99999999999999999999999}`,
		`{"payload":"x","username":"dev2","topic":"t","qos":1e400}`,
		`{"Payload":"\",\"topic\":\"evil","topic":"t"}`,
		`{"PAYLOAD":"x","TOPIC":"upper","topic":"t"}`,
		`{"payload" :` + "\n" + `"a\"b","topic":"t"}`,
		`{"topics":[{"topic":"a","qos":1},{"payload":"x","topic":"b"}],"payload":"\"}],\"topics\":[{\"topic\":\"#\"}"}`,
		`{"topic":"t","payload":"unterminated`,
		`{"topic":"t","payload":"x"}{"topic":"evil"}`,
		`{"topic":"t","payload":"x"}]`,
		`{"username":"dev1","listener_type":"mqtts","payload":"\",\"listener_type\":\"mqtt"}`,
	} {
		s, d, ok := vmqDecodeBoth(t, in)
		if !ok {
			continue
		}
		if !reflect.DeepEqual(s, d) {
			t.Errorf("%q:\nstripped %+v\ndirect   %+v", in, s, d)
		}
	}
}

// FuzzStripPayloadDifferential: the same property on any input.
func FuzzStripPayloadDifferential(f *testing.F) {
	f.Add(`{"topic":"a/b","payload":"\",\"topic\":\"evil","retain":false}`)
	f.Add(`{"topics":[{"topic":"a","qos":1}],"payload":"x","username":"u"}`)
	f.Fuzz(func(t *testing.T, in string) {
		s, d, ok := vmqDecodeBoth(t, in)
		if ok && !reflect.DeepEqual(s, d) {
			t.Fatalf("%q:\nstripped %+v\ndirect   %+v", in, s, d)
		}
	})
}
