package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzJSONText checks jsonTextProblem against what encoding/json makes of
// the same bytes: for any valid JSON, it finds a problem exactly when the
// raw bytes are not UTF-8 (which decoding would hide behind U+FFFD) or some
// decoded string — object keys and strings overwritten by a duplicate key
// included — holds a NUL. So a body decode accepts never hands a handler a
// string PostgreSQL refuses, and refuses nothing else.
func FuzzJSONText(f *testing.F) {
	for _, s := range []string{
		`{"a":"b"}`, `{"a":"\u0000"}`, `{"a":"\\u0000"}`, `{"a":"\\\u0000"}`, `{"a":"\\\\u0000"}`,
		`{"\u0000":1}`, `{"a":"\u0000","a":"x"}`, `["\"\\u0000"]`, `{"a":"\u005cu0000"}`,
		"{\"a\":\"\xff\"}", "{\"a\":\"\xc0\x80\"}", `{"a":"\ud800"}`, `{"a":"\u00000"}`, `"\u0000"`,
		`{"a":["x",{"b":"\u0000"}]}`, `{"a":"ü🙂\ufffd"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return // decode refuses it before the text check
		}
		got := jsonTextProblem(raw) != ""
		want := !utf8.Valid(raw) || decodedNUL(t, raw)
		if got != want {
			t.Fatalf("jsonTextProblem(%q) = %q, want a problem: %v", raw, jsonTextProblem(raw), want)
		}
		if !got {
			// What a handler receives is storable text.
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			walkStrings(v, func(s string) {
				if textProblem(s) != "" {
					t.Fatalf("%q decodes to %q: %s", raw, s, textProblem(s))
				}
			})
		}
	})
}

// decodedNUL reports whether any string token of valid JSON holds a NUL.
func decodedNUL(t *testing.T, raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatalf("token walk of valid JSON %q: %v", raw, err)
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
}

func walkStrings(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case []any:
		for _, e := range v {
			walkStrings(e, fn)
		}
	case map[string]any:
		for k, e := range v {
			fn(k)
			walkStrings(e, fn)
		}
	}
}

// FuzzPlainTextParam: textProblem accepts exactly valid UTF-8 without NUL.
func FuzzPlainTextParam(f *testing.F) {
	for _, s := range []string{"", "dev-1", "a\x00b", "\xff", "\xc0\x80", "\xed\xa0\x80", "ü🙂", "\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ok := textProblem(s) == ""
		want := utf8.ValidString(s) && !strings.ContainsRune(s, 0)
		if ok != want {
			t.Fatalf("textProblem(%q) = %q", s, textProblem(s))
		}
	})
}
