package hooks

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// flexInt accepts 1 and "1": broker templates quote placeholders or not.
type flexInt struct {
	v   int
	set bool
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return malformed("not an integer: " + strconv.Quote(s))
	}
	f.v, f.set = n, true
	return nil
}

// flexBool accepts true, "true", 1, "1" and their false forms.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := parseBool(s)
	if err != nil {
		return err
	}
	*f = flexBool(v)
	return nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "", "null", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, malformed("not a boolean: " + strconv.Quote(s))
}

// decodeObject decodes one JSON object, tolerating unknown fields: broker
// body templates are operator-defined and may carry extra placeholders.
func decodeObject(b []byte, v any) error {
	if trimmed := bytes.TrimLeft(b, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return malformed("body is not a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		var de decodeError
		if ok := asDecodeError(err, &de); ok {
			return de
		}
		return malformed("invalid JSON")
	}
	return nil
}

func asDecodeError(err error, target *decodeError) bool {
	for err != nil {
		if de, ok := err.(decodeError); ok {
			*target = de
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// writeBody writes a pre-encoded JSON answer: the hot path's answers are a
// handful of constant bodies, so they are encoded once.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var jsonContentType = []string{"application/json"}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
