package hooks_test

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/hooks"
)

// FuzzDialects feeds arbitrary bodies to every dialect decoder: no input may
// panic, produce a 5xx, or make a dialect answer anything but its contract.
func FuzzDialects(f *testing.F) {
	files, _ := filepath.Glob("testdata/corpus/*/*.http")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if _, body, ok := strings.Cut(string(raw), "\r\n\r\n"); ok {
			f.Add(uint8(0), body)
		}
	}
	f.Add(uint8(3), "username=dev1&acc=2&topic=%00")
	f.Add(uint8(9), `{"topics":[{"topic":"#","qos":"x"}]}`)
	f.Add(uint8(11), "{\"action\":\"publish\",\"client_id\":\"dev1\",\"identity\":\"dev1\",\"topic\":\"t/\xff\"}")
	f.Add(uint8(11), `{"action":"publish","client_id":"dev1","identity":"dev1","topic":"t/\u0000"}`)
	f.Add(uint8(12), `{"username":"dev1","client_id":"dev1","topics":[{"topic":"#","qos":1,"no_local":"x","retain_handling":7}]}`)
	f.Add(uint8(13), `{"username":"dev1","client_id":"dev1","listener_type":7}`)
	f.Add(uint8(11), `{"action":"connect","client_id":"dev1","identity":"dev1","certificate_der":"MIIBAA=="}`)
	f.Add(uint8(11), `{"action":"connect","client_id":"dev1","identity":"dev1","certificate_der":"AA","certificate":"x"}`)
	endpoints := []struct{ path, ctype, hook string }{
		{"/hooks/emqx/authn", "application/json", ""},
		{"/hooks/emqx/authz", "application/json", ""},
		{"/hooks/vernemq", "application/json", "auth_on_register"},
		{"/hooks/vernemq", "application/json", "auth_on_publish_m5"},
		{"/hooks/vernemq", "application/json", "auth_on_subscribe"},
		{"/hooks/mosquitto/user", "application/json", ""},
		{"/hooks/mosquitto/acl", "application/json", ""},
		{"/hooks/mosquitto/acl", "application/x-www-form-urlencoded", ""},
		{"/hooks/rabbitmq/user", "application/x-www-form-urlencoded", ""},
		{"/hooks/rabbitmq/resource", "application/x-www-form-urlencoded", ""},
		{"/hooks/rabbitmq/topic", "application/x-www-form-urlencoded", ""},
		{"/hooks/v1/authorize", "application/json", ""},
		{"/hooks/vernemq", "application/json", "auth_on_subscribe_m5"},
		{"/hooks/vernemq", "application/json", "auth_on_register_m5"},
	}
	az := newAuthorizer(f)
	h, err := hooks.New(hooks.Config{Authorizer: az, Devices: az, Secret: secret, RabbitCertLogin: true, VerneMQPerFilterSuback: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		ep := endpoints[int(which)%len(endpoints)]
		req := httptest.NewRequest("POST", ep.path, strings.NewReader(body))
		req.Header.Set("Content-Type", ep.ctype)
		req.Header.Set("X-Gatehouse-Hook-Secret", secret)
		if ep.hook != "" {
			req.Header.Set("vernemq-hook", ep.hook)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s: status %d", ep.path, rec.Code)
		}
		if strings.Contains(rec.Body.String(), `"next"`) || strings.Contains(rec.Body.String(), `"ignore"`) {
			t.Fatalf("%s passed the decision on: %s", ep.path, rec.Body.String())
		}
	})
}
