package hooks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/policy"
)

var update = flag.Bool("update", false, "rewrite the .golden files from the current answers")

const secret = "hook-secret-for-tests"

func newAuthorizer(t testing.TB) *authz.Authorizer {
	t.Helper()
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	a := authz.New(authz.Config{})
	a.SetPolicy(p, 1)
	exp := time.Now().Add(time.Hour)
	for _, d := range []authz.Device{
		{ID: "dev1", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"}, CertSerial: "a1", CertNotAfter: exp},
		{ID: "dev2", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"}, CertSerial: "a2", CertNotAfter: exp},
		{ID: "ctl", Fleet: "plant", Active: true, Status: "active", Roles: []string{"command"}, CertSerial: "a3", CertNotAfter: exp},
		{ID: "susp", Fleet: "plant", Active: false, Status: "suspended", CertSerial: "a4", CertNotAfter: exp},
	} {
		a.UpsertDevice(d)
	}
	return a
}

func newHandler(t testing.TB, mode hooks.MosquittoMode) *hooks.Handler {
	t.Helper()
	h, err := hooks.New(hooks.Config{Authorizer: newAuthorizer(t), Secret: secret, MosquittoMode: mode, RabbitCertLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// allowedBy reads the one bit a broker gets out of a dialect's response.
func allowedBy(dialect string, status int, body string) bool {
	body = strings.TrimSpace(body)
	switch dialect {
	case "emqx":
		return status == 200 && strings.Contains(body, `"result":"allow"`)
	case "vernemq", "vernemq-2.2":
		return status == 200 && body == `{"result":"ok"}`
	case "mosquitto-status":
		return status == 200
	case "mosquitto-json":
		return status == 200 && strings.Contains(body, `"Ok":true`)
	case "mosquitto-text":
		return status == 200 && body == "ok"
	case "rabbitmq":
		return status == 200 && body == "allow"
	case "native":
		return status == 200 && body == `{"allow":true}`
	}
	panic("unknown dialect " + dialect)
}

// TestCorpus replays every recorded broker request under testdata/corpus
// and compares the answer byte for byte with its .golden file. Independently
// of the golden bytes, a case named allow_* must be answered allow and a
// case named deny_* must be answered with the dialect's explicit deny.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*/*.http")
	if err != nil || len(files) < 80 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	handlers := map[string]*hooks.Handler{}
	for _, f := range files {
		dialect := filepath.Base(filepath.Dir(f))
		name := strings.TrimSuffix(filepath.Base(f), ".http")
		t.Run(dialect+"/"+name, func(t *testing.T) {
			h := handlers[dialect]
			if h == nil {
				mode := hooks.MosquittoStatus
				if m, ok := strings.CutPrefix(dialect, "mosquitto-"); ok {
					mode = hooks.MosquittoMode(m)
				}
				cfg := hooks.Config{Authorizer: newAuthorizer(t), Secret: secret, MosquittoMode: mode, RabbitCertLogin: true}
				// vernemq-2.2 holds the cases answered differently when the
				// operator declares VerneMQ 2.2.0 or newer.
				cfg.VerneMQPerFilterSuback = dialect == "vernemq-2.2"
				if h, err = hooks.New(cfg); err != nil {
					t.Fatal(err)
				}
				handlers[dialect] = h
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatalf("corpus request does not parse: %v", err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := fmt.Sprintf("HTTP %d\nContent-Type: %s\n\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
			golden := strings.TrimSuffix(f, ".http") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden file (run with -update and review it): %v", err)
			}
			if got != string(want) {
				t.Errorf("answer differs from %s:\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
			if rec.Code >= 500 {
				t.Errorf("status %d: brokers read 5xx as an error, not a deny", rec.Code)
			}
			wantAllow := strings.HasPrefix(name, "allow_")
			if !wantAllow && !strings.HasPrefix(name, "deny_") {
				t.Fatalf("case name must start with allow_ or deny_")
			}
			if a := allowedBy(dialect, rec.Code, rec.Body.String()); a != wantAllow {
				t.Errorf("allowed = %v, want %v: %s", a, wantAllow, got)
			}
			if strings.Contains(rec.Body.String(), `"next"`) || strings.Contains(rec.Body.String(), `"ignore"`) {
				t.Errorf("answer passes the decision on: %s", rec.Body.String())
			}
		})
	}
}

// failing is an Authorizer that always malfunctions.
type failing struct{}

func (failing) Authorize(context.Context, authz.Request) (authz.Decision, error) {
	return authz.Decision{Allow: true}, fmt.Errorf("database on fire")
}

// TestErrorsAreExplicitDenies: a core that errors (even one that also says
// allow) yields every dialect's explicit deny.
func TestErrorsAreExplicitDenies(t *testing.T) {
	cases := []struct {
		dialect string
		method  string
		path    string
		ctype   string
		body    string
		hook    string
	}{
		{"emqx", "POST", "/hooks/emqx/authn", "application/json", `{"clientid":"dev1","cert_common_name":"dev1"}`, ""},
		{"emqx", "POST", "/hooks/emqx/authz", "application/json", `{"clientid":"dev1","cert_common_name":"dev1","action":"publish","topic":"fleets/plant/devices/dev1/telemetry"}`, ""},
		{"vernemq", "POST", "/hooks/vernemq", "application/json", `{"username":"dev1","client_id":"dev1","topic":"fleets/plant/devices/dev1/telemetry","qos":0}`, "auth_on_publish"},
		{"vernemq", "POST", "/hooks/vernemq", "application/json", `{"username":"dev1","client_id":"dev1","topics":[{"topic":"fleets/plant/devices/dev1/cmd/#","qos":0}]}`, "auth_on_subscribe"},
		{"mosquitto-status", "POST", "/hooks/mosquitto/acl", "application/json", `{"username":"dev1","clientid":"dev1","topic":"fleets/plant/devices/dev1/telemetry","acc":2}`, ""},
		{"rabbitmq", "GET", "/hooks/rabbitmq/user?username=dev1", "", "", ""},
		{"native", "POST", "/hooks/v1/authorize", "application/json", `{"action":"connect","client_id":"dev1","identity":"dev1"}`, ""},
	}
	h, err := hooks.New(hooks.Config{Authorizer: failing{}, Secret: secret, RabbitCertLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.dialect+tc.path+tc.hook, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.hook != "" {
				req.Header.Set("vernemq-hook", tc.hook)
			}
			req.Header.Set("X-Gatehouse-Hook-Secret", secret)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if allowedBy(tc.dialect, rec.Code, rec.Body.String()) || rec.Code >= 500 {
				t.Fatalf("error answered as %d %s", rec.Code, rec.Body.String())
			}
			if tc.dialect == "emqx" && !json.Valid(rec.Body.Bytes()) {
				t.Fatal("EMQX deny must be valid JSON (anything else is ignore)")
			}
		})
	}
}
