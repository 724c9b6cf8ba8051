package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// decode reads one strict JSON object into v: unknown fields, trailing data,
// wrong types, oversize bodies and text no database can store (text.go) are
// client errors with codes, never 500s.
func decode(c echo.Context, v any) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != echo.MIMEApplicationJSON {
			return fault.New(fault.InvalidArgument, "Content-Type must be application/json")
		}
	}
	dec := json.NewDecoder(c.Request().Body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return fault.New(fault.InvalidArgument, "request body holds more than one JSON value")
	}
	// null would decode into v as an empty object, and an array would fail
	// with a type error naming no field: neither is the object asked for.
	if len(raw) == 0 || raw[0] != '{' {
		return fault.New(fault.InvalidArgument, "request body must be a JSON object")
	}
	if p := jsonTextProblem(raw); p != "" {
		return fault.New(fault.InvalidArgument, "request body %s: text may hold neither NUL characters nor invalid UTF-8", p)
	}
	obj := json.NewDecoder(bytes.NewReader(raw))
	obj.DisallowUnknownFields()
	if err := obj.Decode(v); err != nil {
		return decodeError(err)
	}
	return nil
}

func decodeError(err error) error {
	var (
		maxErr  *http.MaxBytesError
		synErr  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return fault.New(fault.BodyTooLarge, "request body is larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return fault.New(fault.InvalidArgument, "request body is empty")
	case errors.As(err, &synErr), errors.Is(err, io.ErrUnexpectedEOF):
		return fault.New(fault.InvalidArgument, "request body is not valid JSON")
	case errors.As(err, &typeErr):
		return fault.New(fault.InvalidArgument, "field %q has the wrong type", typeErr.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fault.New(fault.InvalidArgument, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fault.Wrap(err, fault.InvalidArgument, "request body could not be decoded")
}

// parseDuration accepts Go durations ("720h", "90m") and whole days ("30d").
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, fault.New(fault.InvalidArgument, "%s is required", field)
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 36500 {
			return 0, fault.New(fault.InvalidArgument, "%s: %q is not a number of days", field, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fault.New(fault.InvalidArgument, "%s: %q is not a duration like 720h or 30d", field, s)
	}
	return v, nil
}

// queryInt reads an optional integer query parameter.
func queryInt(c echo.Context, name string) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fault.New(fault.InvalidArgument, "query parameter %s must be a non-negative integer", name)
	}
	return n, nil
}
