package hooks_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/hooks"
)

// allowAll is a core that allows everything: whatever a test sees denied,
// the hook layer denied.
type allowAll struct{}

func (allowAll) Authorize(context.Context, authz.Request) (authz.Decision, error) {
	return authz.Decision{Allow: true, Reason: "test allows all"}, nil
}

// TestBadTextIsDenied: a NUL or invalid UTF-8 in a topic, client id or
// username — JSON escape, raw bytes in a JSON body, or percent-encoded in a
// form or query — is every dialect's explicit deny, before the core is
// asked, and never a 5xx. Before, the raw bytes became U+FFFD in JSON (a
// decision about another topic than the broker's) and the rest reached the
// core as they were: a permissive policy allowed them.
func TestBadTextIsDenied(t *testing.T) {
	type variant struct{ name, json, form string }
	clean := variant{"clean", "x", "x"}
	bad := []variant{
		{"NUL", `\u0000`, "%00"},
		{"invalid UTF-8", "\xff", "%ff"},
		{"overlong NUL", "\xc0\x80", "%c0%80"},
	}
	cases := []struct {
		dialect, method, path, ctype, hook, body string
		form                                     bool // @ is percent-encoded (form body or query)
	}{
		{"emqx", "POST", "/hooks/emqx/authz", "application/json", "", `{"clientid":"dev1","cert_common_name":"dev1","username":"dev1","action":"publish","topic":"t/@","qos":0}`, false},
		{"emqx", "POST", "/hooks/emqx/authn", "application/json", "", `{"clientid":"dev1","cert_common_name":"dev1","username":"dev1@"}`, false},
		{"vernemq", "POST", "/hooks/vernemq", "application/json", "auth_on_publish", `{"username":"dev1","client_id":"dev1","mountpoint":"","qos":0,"topic":"t/@","payload":"","retain":false}`, false},
		{"vernemq", "POST", "/hooks/vernemq", "application/json", "auth_on_subscribe", `{"username":"dev1","client_id":"dev1","mountpoint":"","topics":[{"topic":"t/@","qos":0}]}`, false},
		{"vernemq", "POST", "/hooks/vernemq", "application/json", "auth_on_register", `{"username":"dev1","client_id":"dev1@","mountpoint":"","password":""}`, false},
		{"mosquitto-status", "POST", "/hooks/mosquitto/acl", "application/json", "", `{"username":"dev1","clientid":"dev1","topic":"t/@","acc":2}`, false},
		{"mosquitto-status", "POST", "/hooks/mosquitto/acl", "application/x-www-form-urlencoded", "", `username=dev1&clientid=dev1&topic=t%2F@&acc=2`, true},
		{"mosquitto-status", "GET", "/hooks/mosquitto/acl?username=dev1&clientid=dev1&topic=t%2F@&acc=1", "", "", "", true},
		{"mosquitto-status", "POST", "/hooks/mosquitto/acl", "application/json", "", `{"username":"dev1@","clientid":"dev1@","topic":"t","acc":4}`, false},
		{"rabbitmq", "GET", "/hooks/rabbitmq/topic?username=dev1&vhost=%2F&resource=topic&name=amq.topic&permission=write&routing_key=t.@&variable_map.client_id=dev1", "", "", "", true},
		{"rabbitmq", "POST", "/hooks/rabbitmq/topic", "application/x-www-form-urlencoded", "", `username=dev1&vhost=%2F&resource=topic&name=amq.topic&permission=write&routing_key=t.@&variable_map.client_id=dev1`, true},
		{"rabbitmq", "GET", "/hooks/rabbitmq/user?username=dev1@", "", "", "", true},
		{"native", "POST", "/hooks/v1/authorize", "application/json", "", `{"action":"publish","client_id":"dev1","identity":"dev1","topic":"t/@"}`, false},
		{"native", "POST", "/hooks/v1/authorize", "application/json", "", `{"action":"connect","client_id":"dev1","identity":"dev1","username":"u@"}`, false},
	}
	h, err := hooks.New(hooks.Config{Authorizer: allowAll{}, Secret: secret, RabbitCertLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		for _, v := range append([]variant{clean}, bad...) {
			sub := v.json
			if tc.form {
				sub = v.form
			}
			path, body := strings.ReplaceAll(tc.path, "@", sub), strings.ReplaceAll(tc.body, "@", sub)
			req := httptest.NewRequest(tc.method, path, strings.NewReader(body))
			req.Header.Set("X-Gatehouse-Hook-Secret", secret)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.hook != "" {
				req.Header.Set("vernemq-hook", tc.hook)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			name := tc.dialect + " " + tc.method + " " + tc.path + " " + tc.hook + ", " + v.name
			if rec.Code >= 500 {
				t.Errorf("%s: status %d", name, rec.Code)
			}
			if got, want := allowedBy(tc.dialect, rec.Code, rec.Body.String()), v == clean; got != want {
				t.Errorf("%s: allowed = %v, want %v (%d %s)", name, got, want, rec.Code, rec.Body.String())
			}
		}
	}
}
