package hooks_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testlog"

	"github.com/gatehouse-iot/gatehouse/hooks"
)

// dialectCases are one request per dialect that the default policy allows
// for dev1 when the caller is authenticated.
var dialectCases = []struct {
	dialect, method, path, ctype, body, hook string
}{
	{"emqx", "POST", "/hooks/emqx/authn", "application/json", `{"clientid":"dev1","cert_common_name":"dev1"}`, ""},
	{"emqx", "POST", "/hooks/emqx/authz", "application/json", `{"clientid":"dev1","cert_common_name":"dev1","action":"publish","topic":"fleets/plant/devices/dev1/telemetry/t"}`, ""},
	{"vernemq", "POST", "/hooks/vernemq", "application/json", `{"username":"dev1","client_id":"dev1"}`, "auth_on_register"},
	{"vernemq", "POST", "/hooks/vernemq", "application/json", `{"username":"dev1","client_id":"dev1","topic":"fleets/plant/devices/dev1/telemetry/t","qos":0}`, "auth_on_publish"},
	{"vernemq", "POST", "/hooks/vernemq", "application/json", `{"username":"dev1","client_id":"dev1","topics":[{"topic":"fleets/plant/devices/dev1/cmd/#","qos":0}]}`, "auth_on_subscribe"},
	{"mosquitto-status", "POST", "/hooks/mosquitto/acl", "application/json", `{"username":"dev1","clientid":"dev1","topic":"fleets/plant/devices/dev1/cmd/reboot","acc":1}`, ""},
	{"mosquitto-status", "POST", "/hooks/mosquitto/acl", "application/json", `{"username":"dev1","clientid":"dev1","topic":"fleets/plant/devices/dev1/telemetry/t","acc":2}`, ""},
	{"rabbitmq", "POST", "/hooks/rabbitmq/user", "application/x-www-form-urlencoded", "username=dev1", ""},
	{"rabbitmq", "POST", "/hooks/rabbitmq/topic", "application/x-www-form-urlencoded", "username=dev1&vhost=%2F&resource=topic&name=amq.topic&permission=write&routing_key=fleets.plant.devices.dev1.telemetry.t&variable_map.client_id=dev1", ""},
	{"native", "POST", "/hooks/v1/authorize", "application/json", `{"action":"connect","client_id":"dev1","identity":"dev1"}`, ""},
}

// TestHookAuthentication: a request is served only with the secret (header
// or basic-auth password) or over verified mutual TLS, unless the operator
// opened the hooks; everything else is each dialect's explicit deny.
func TestHookAuthentication(t *testing.T) {
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	unverified := &tls.ConnectionState{}
	cases := []struct {
		name  string
		cfg   hooks.Config
		prep  func(*http.Request)
		allow bool
	}{
		{"secret in header", hooks.Config{Secret: secret}, func(r *http.Request) { r.Header.Set("X-Gatehouse-Hook-Secret", secret) }, true},
		{"secret as basic-auth password", hooks.Config{Secret: secret}, func(r *http.Request) { r.SetBasicAuth("gatehouse", secret) }, true},
		{"no secret", hooks.Config{Secret: secret}, func(*http.Request) {}, false},
		{"wrong secret", hooks.Config{Secret: secret}, func(r *http.Request) { r.Header.Set("X-Gatehouse-Hook-Secret", secret+"x") }, false},
		{"secret prefix", hooks.Config{Secret: secret}, func(r *http.Request) { r.Header.Set("X-Gatehouse-Hook-Secret", secret[:8]) }, false},
		{"verified client certificate", hooks.Config{ClientCerts: true}, func(r *http.Request) { r.TLS = verified }, true},
		{"TLS without a verified chain", hooks.Config{ClientCerts: true}, func(r *http.Request) { r.TLS = unverified }, false},
		{"client certificate when only a secret is configured", hooks.Config{Secret: secret}, func(r *http.Request) { r.TLS = verified }, false},
		{"client certificates, no TLS", hooks.Config{ClientCerts: true}, func(*http.Request) {}, false},
		{"opened explicitly", hooks.Config{AllowUnauthenticated: true}, func(*http.Request) {}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Authorizer, cfg.RabbitCertLogin = newAuthorizer(t), true
			h, err := hooks.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, dc := range dialectCases {
				req := httptest.NewRequest(dc.method, dc.path, strings.NewReader(dc.body))
				req.Header.Set("Content-Type", dc.ctype)
				if dc.hook != "" {
					req.Header.Set("vernemq-hook", dc.hook)
				}
				tc.prep(req)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code >= 500 {
					t.Fatalf("%s %s: status %d", dc.path, dc.hook, rec.Code)
				}
				if got := allowedBy(dc.dialect, rec.Code, rec.Body.String()); got != tc.allow {
					t.Errorf("%s %s: allowed=%v, want %v (%d %s)", dc.path, dc.hook, got, tc.allow, rec.Code, rec.Body)
				}
			}
		})
	}
}

// TestNewRefusesOpenHooks: with no secret, no client certificates and no
// explicit opt-in the handler is not built (hooks are closed by default);
// a short secret is refused too.
func TestNewRefusesOpenHooks(t *testing.T) {
	cases := []struct {
		name string
		cfg  hooks.Config
		ok   bool
	}{
		{"nothing configured", hooks.Config{}, false},
		{"short secret", hooks.Config{Secret: "0123456789abcde"}, false},
		{"secret", hooks.Config{Secret: "0123456789abcdef"}, true},
		{"client certificates", hooks.Config{ClientCerts: true}, true},
		{"allow unauthenticated", hooks.Config{AllowUnauthenticated: true}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Authorizer = newAuthorizer(t)
			_, err := hooks.New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestUnauthenticatedLogThrottled: 3000 requests without the secret, from
// many goroutines over every dialect and some malformed, write a handful of
// log lines (at most one per second) whose counts add up to 3000. Hooks the
// operator opened (allow_unauthenticated) are no different: anyone who
// reaches them can send 3000 malformed requests, and those are counted, not
// logged each.
func TestUnauthenticatedLogThrottled(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  hooks.Config
		// every how many requests is malformed; the open hooks serve the
		// others, so there all are.
		malformedEvery int
	}{
		{"closed", hooks.Config{Secret: secret}, 3},
		{"opened", hooks.Config{AllowUnauthenticated: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) { testUnauthenticatedLogThrottled(t, tc.cfg, tc.malformedEvery) })
	}
}

func testUnauthenticatedLogThrottled(t *testing.T, cfg hooks.Config, malformedEvery int) {
	var logs testlog.Buffer
	cfg.Authorizer, cfg.RabbitCertLogin, cfg.Log = newAuthorizer(t), true, slog.New(slog.NewTextHandler(&logs, nil))
	h, err := hooks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const total, workers = 3000, 30
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / workers {
				dc := dialectCases[(w+i)%len(dialectCases)]
				body := dc.body
				if i%malformedEvery == 0 {
					body = "{not json" // malformed and unauthenticated: counted the same
				}
				req := httptest.NewRequest(dc.method, dc.path, strings.NewReader(body))
				req.Header.Set("Content-Type", dc.ctype)
				if dc.hook != "" {
					req.Header.Set("vernemq-hook", dc.hook)
				}
				if i%2 == 0 {
					req.Header.Set("X-Gatehouse-Hook-Secret", "wrong-secret-of-some-length")
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if allowedBy(dc.dialect, rec.Code, rec.Body.String()) || rec.Code >= 500 {
					t.Errorf("%s: unauthenticated request answered %d %s", dc.path, rec.Code, rec.Body)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// The last period's count is written when it ends.
	countRe := regexp.MustCompile(`\bcount=(\d+)\b`)
	deadline := time.Now().Add(5 * time.Second)
	var lines []string
	sum := 0
	for {
		lines, sum = nil, 0
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if l == "" {
				continue
			}
			lines = append(lines, l)
			if m := countRe.FindStringSubmatch(l); m != nil && strings.Contains(l, "unauthenticated hook requests denied") {
				n, _ := strconv.Atoi(m[1])
				sum += n
			}
		}
		if sum >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One line when the flood starts, one per further second it lasts, one
	// for the rest.
	limit := 2 + int(elapsed/time.Second) + 1
	// Open hooks deny some malformed requests as a decision (a form body
	// without a username is one), not as an error: those are not counted.
	if len(lines) > limit || sum > total || (sum != total && cfg.Secret != "") || sum < total/2 {
		t.Fatalf("%d requests in %s: %d log lines (limit %d), counts add up to %d\n%s",
			total, elapsed.Round(time.Millisecond), len(lines), limit, sum, strings.Join(lines[:min(len(lines), 20)], "\n"))
	}
	t.Logf("%d unauthenticated requests in %s → %d log lines:\n%s", total, elapsed.Round(time.Millisecond), len(lines), strings.Join(lines, "\n"))
}
