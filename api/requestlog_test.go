package api_test

import (
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testlog"
)

func withLogger(l *slog.Logger) stackOpt { return func(c *stackCfg) { c.api.Logger = l } }

// requestLine waits for the request line carrying id (the line is written
// once the answer is, so it may trail the client's read) and decodes it.
func requestLine(t *testing.T, logs *testlog.Buffer, id string) (map[string]any, string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request" && m["request_id"] == id {
				return m, line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request line with id %q in:\n%s", id, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestLog: one JSON line per request with the id, the route pattern,
// the status and the size, and none of the secrets the request carried —
// bearer token, session cookie, query values, body, raw path. A client's
// X-Request-Id is kept only when it fits the grammar.
func TestRequestLog(t *testing.T) {
	logs := &testlog.Buffer{}
	s := newStack(t, testdb.SQLite(t), withLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	const (
		querySecret  = "s3cr3t-in-the-query"
		cookieSecret = "s3cr3t-in-the-cookie"
		bodySecret   = "s3cr3t-in-the-body-password"
	)
	secrets := []string{querySecret, cookieSecret, bodySecret, s.admin, s.viewer, "zz-device-in-path"}
	cases := []struct {
		name, method, path, id, bearer, cookie, body string
		wantStatus                                   int
		wantRoute                                    string
		keepsID                                      bool
	}{
		{"bearer and query secret", "GET", "/api/v1/devices?q=" + querySecret + "&token=" + querySecret, "req-1.A_b", s.admin, "", "", 200, "/api/v1/devices", true},
		{"wrong bearer", "GET", "/api/v1/fleets?access_token=" + querySecret, "req-2", s.viewer + "x", "", "", 401, "/api/v1/fleets", true},
		{"path id not logged", "GET", "/api/v1/devices/zz-device-in-path", strings.Repeat("x", 64), s.viewer, "", "", 404, "/api/v1/devices/:id", true},
		{"cookie", "GET", "/api/v1/session", "req-4", "", cookieSecret, "", 401, "/api/v1/session", true},
		{"login body", "POST", "/api/v1/session", "req-5", "", "", `{"username":"nobody","password":"` + bodySecret + `"}`, 401, "/api/v1/session", true},
		{"id too long", "GET", "/api/v1/version", strings.Repeat("x", 65), "", "", "", 200, "/api/v1/version", false},
		{"id with a space", "GET", "/api/v1/version", "a b", "", "", "", 200, "/api/v1/version", false},
		{"id forging a field", "GET", "/api/v1/version", `x" status=200`, "", "", "", 200, "/api/v1/version", false},
		{"no id", "GET", "/api/v1/version", "", "", "", "", 200, "/api/v1/version", false},
		{"unknown path", "GET", "/api/v1/nothing?k=" + querySecret, "req-6", "", "", "", 404, "/api/*", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request{method: tc.method, path: tc.path, bearer: tc.bearer, header: map[string]string{}}
			if tc.id != "" {
				req.header[api.RequestIDHeader] = tc.id
			}
			if tc.cookie != "" {
				req.header["Cookie"] = api.SessionCookie + "=" + tc.cookie
			}
			if tc.body != "" {
				req.contentType, req.body = "application/json", strings.NewReader(tc.body)
			}
			r := s.send(t, req)
			id := r.header.Get(api.RequestIDHeader)
			if tc.keepsID && id != tc.id || !tc.keepsID && !generatedID.MatchString(id) {
				t.Fatalf("X-Request-Id %q for sent %q (keep: %v)", id, tc.id, tc.keepsID)
			}
			m, line := requestLine(t, logs, id)
			t.Log(line)
			if m["route"] != tc.wantRoute || m["method"] != tc.method || m["status"] != float64(tc.wantStatus) || r.status != tc.wantStatus {
				t.Errorf("line %s: want route %s, method %s, status %d (client got %d)", line, tc.wantRoute, tc.method, tc.wantStatus, r.status)
			}
			if m["bytes"] != float64(len(r.body)) || m["remote_ip"] != "127.0.0.1" {
				t.Errorf("line %s: want bytes %d and remote_ip 127.0.0.1", line, len(r.body))
			}
			if _, ok := m["duration"].(float64); !ok {
				t.Errorf("line %s has no duration", line)
			}
		})
	}
	all := logs.String()
	for _, sec := range secrets {
		if strings.Contains(all, sec) {
			t.Errorf("the log holds the secret %q:\n%s", sec, all)
		}
	}
	if n := strings.Count(all, `"msg":"request"`); n != len(cases) {
		t.Errorf("%d request lines for %d requests:\n%s", n, len(cases), all)
	}
}

// TestRequestLogMalfunction: a server error's own log line carries the
// request's id, so an operator finds the cause from the id a client
// reports; the request line shows the 500 the client got.
func TestRequestLogMalfunction(t *testing.T) {
	logs := &testlog.Buffer{}
	dsn := testdb.SQLite(t)
	s := newStack(t, dsn, withLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	testdb.FailAuditInserts(t, dsn)
	r := s.send(t, request{method: "POST", path: "/api/v1/fleets", bearer: s.admin, contentType: "application/json",
		body: strings.NewReader(`{"name":"f"}`), header: map[string]string{api.RequestIDHeader: "incident-7"}})
	if r.status != 500 || r.header.Get(api.RequestIDHeader) != "incident-7" {
		t.Fatalf("%d %v: %s", r.status, r.header, r)
	}
	if m, line := requestLine(t, logs, "incident-7"); m["status"] != float64(500) {
		t.Errorf("request line %s: want status 500", line)
	}
	var found bool
	for _, line := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request failed" {
			found = m["request_id"] == "incident-7" && m["path"] == "/api/v1/fleets"
		}
	}
	if !found {
		t.Errorf("no error line with request_id incident-7:\n%s", logs.String())
	}
}
