package hooks_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/hooks"
)

// BenchmarkEMQXAuthz is the in-process cost of one cached EMQX authz
// request through the handler (decode, decide, encode), no network.
func BenchmarkEMQXAuthz(b *testing.B) {
	h, err := hooks.New(hooks.Config{Authorizer: newAuthorizer(b), Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	body := `{"clientid":"dev1","username":"dev1","cert_common_name":"dev1","action":"publish","topic":"fleets/plant/devices/dev1/telemetry/temp","qos":"1","retain":"false"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/hooks/emqx/authz", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Gatehouse-Hook-Secret", secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "allow") {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}
