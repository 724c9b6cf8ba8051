package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// scrape is one read of GET /metrics on the diagnostics listener.
type scrape map[string]*dto.MetricFamily

func (g *gatehouse) scrape(t *testing.T) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(g.scrapeText(t)))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return mfs
}

// get is the value of the series of name whose labels include want (a
// histogram's sample count), summed over the series that match; a missing
// series is 0.
func (s scrape) get(name string, want map[string]string) float64 {
	mf := s[name]
	if mf == nil {
		return 0
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// TestMetricsAfterTraffic: the real server's GET /metrics moves by exactly
// the traffic sent between two scrapes — allowed and denied decisions
// through two hook dialects, enrollments, a failed enrollment, an OCSP
// request — on both databases.
func TestMetricsAfterTraffic(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			var env []string
			if backend == "postgres" {
				env = append(env, "GATEHOUSE_DATABASE_DSN="+testdb.Postgres(t))
			}
			g := newGatehouse(t, env...)
			g.serve(t)
			testMetricsAfterTraffic(t, g)
		})
	}
}

// Traffic sizes: distinct, so a count landing on the wrong series shows.
const (
	metricAllows  = 7
	metricDenies  = 4
	metricEnrolls = 3
)

func testMetricsAfterTraffic(t *testing.T, g *gatehouse) {
	tokens := g.tokens(t, "default", metricEnrolls)
	before := g.scrape(t)
	certs := sendMetricTraffic(t, g, tokens)
	after := g.scrape(t)
	checkMetricDeltas(t, before, after)
	checkMetricGauges(t, after)
	raw := g.scrapeText(t)
	var excerpt []string
	for _, l := range strings.Split(raw, "\n") {
		if strings.HasPrefix(l, "gatehouse_") && !strings.Contains(l, "_bucket{") {
			excerpt = append(excerpt, l)
		}
	}
	t.Logf("/metrics after the traffic (gatehouse_ series, buckets left out):\n%s", strings.Join(excerpt, "\n"))
	for _, c := range certs {
		if strings.Contains(raw, c.Subject.CommonName) || strings.Contains(raw, c.SerialNumber.Text(16)) {
			t.Errorf("/metrics names device %s or its serial", c.Subject.CommonName)
		}
	}
}

// sendMetricTraffic enrolls with each token, fails one enrollment, sends
// metricAllows allowed and metricDenies denied publishes through two hook
// dialects and asks OCSP once; it returns the certificates.
func sendMetricTraffic(t *testing.T, g *gatehouse, tokens []string) []*x509.Certificate {
	var certs []*x509.Certificate
	for _, tok := range tokens {
		certs = append(certs, g.enrollRaw(t, tok, http.StatusCreated))
	}
	g.enrollRaw(t, tokens[0], http.StatusConflict) // a used token, with a new key: token_used
	id := certs[0].Subject.CommonName
	for i := range metricAllows {
		g.hook(t, "/hooks/emqx/authz", map[string]any{"clientid": id, "cert_common_name": id, "action": "publish",
			"topic": fmt.Sprintf("fleets/default/devices/%s/telemetry/t%d", id, i%3), "qos": 1}, `{"result":"allow"}`)
	}
	for i := range metricDenies {
		g.hook(t, "/hooks/v1/authorize", map[string]any{"action": "publish", "client_id": id, "identity": id,
			"topic": fmt.Sprintf("fleets/default/devices/someone-%d/telemetry", i)}, `{"allow":false}`)
	}
	if st := g.ocsp(t, certs[1]); st != xocsp.Good {
		t.Fatalf("OCSP status %d for a fresh certificate, want good", st)
	}
	return certs
}

// checkMetricDeltas: the counters moved by exactly what
// sendMetricTraffic sent.
func checkMetricDeltas(t *testing.T, before, after scrape) {
	delta := func(name string, labels map[string]string) float64 {
		return after.get(name, labels) - before.get(name, labels)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gatehouse_decisions_total", nil, metricAllows + metricDenies},
		{"gatehouse_decisions_total", map[string]string{"dialect": "emqx", "action": "publish", "result": "allow", "reason": "ok"}, metricAllows},
		{"gatehouse_decisions_total", map[string]string{"dialect": "native", "action": "publish", "result": "deny", "reason": "no_grant"}, metricDenies},
		{"gatehouse_hook_request_duration_seconds", map[string]string{"dialect": "emqx"}, metricAllows},
		{"gatehouse_hook_request_duration_seconds", map[string]string{"dialect": "native"}, metricDenies},
		// Every publish is one cache lookup: the first of each topic a miss.
		{"gatehouse_decision_cache_requests_total", nil, metricAllows + metricDenies},
		{"gatehouse_decision_cache_requests_total", map[string]string{"result": "miss"}, 3 + metricDenies},
		{"gatehouse_enrollments_total", nil, metricEnrolls + 1},
		{"gatehouse_enrollments_total", map[string]string{"kind": "enroll", "code": "ok"}, metricEnrolls},
		{"gatehouse_enrollments_total", map[string]string{"kind": "enroll", "code": "token_used"}, 1},
		{"gatehouse_http_requests_total", map[string]string{"route": "/api/v1/enroll", "method": "POST", "code": "201"}, metricEnrolls},
		{"gatehouse_http_requests_total", map[string]string{"route": "/api/v1/enroll", "method": "POST", "code": "409"}, 1},
		{"gatehouse_ocsp_responses_total", nil, 1},
		{"gatehouse_ocsp_responses_total", map[string]string{"status": "good"}, 1},
	} {
		if got := delta(c.name, c.labels); got != c.want {
			t.Errorf("%s%v moved by %v, want exactly %v", c.name, c.labels, got, c.want)
		}
	}
	// The core's latency is a sample of its decisions.
	if n := delta("gatehouse_decision_duration_seconds", nil); n > metricAllows+metricDenies {
		t.Errorf("%v core durations for %d decisions", n, metricAllows+metricDenies)
	}
}

// checkMetricGauges: what the scrape reads from the core, the CRL and
// the store is the state of a fresh server.
func checkMetricGauges(t *testing.T, after scrape) {
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gatehouse_policy_active_version", nil, 1},
		{"gatehouse_sync_stale", nil, 0},
		{"gatehouse_session_kicks", map[string]string{"status": "pending"}, 0},
	} {
		if got := after.get(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"gatehouse_crl_number", "gatehouse_grant_computations_total", "go_goroutines", "process_resident_memory_bytes"} {
		if after.get(name, nil) <= 0 {
			t.Errorf("%s is %v, want > 0", name, after.get(name, nil))
		}
	}
	if mf := after["gatehouse_session_kicks"]; mf == nil || len(mf.GetMetric()) != 4 {
		t.Errorf("gatehouse_session_kicks: %v, want one series per status", mf)
	}
	if s := after.get("gatehouse_sync_staleness_seconds", nil); s < 0 || s > 60 {
		t.Errorf("sync staleness %vs on a server that just synced", s)
	}
}

// scrapeText is the body of GET /metrics on the diagnostics listener.
func (g *gatehouse) scrapeText(t *testing.T) string {
	t.Helper()
	resp, err := g.client.Get("http://" + g.diagAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// enrollRaw enrolls with token and a new key over the API, expecting
// status want; on success it returns the certificate.
func (g *gatehouse) enrollRaw(t *testing.T, token string, want int) *x509.Certificate {
	t.Helper()
	body, _ := json.Marshal(apitypes.EnrollRequest{Token: token, CSR: testpki.CSRPEM(t, testpki.Key(t, "P-256"))})
	resp, err := g.client.Post(g.server+"/api/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("enroll: HTTP %d, want %d\n%s", resp.StatusCode, want, raw)
	}
	if want != http.StatusCreated {
		return nil
	}
	var out apitypes.EnrollResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(out.Certificate))
	if block == nil {
		t.Fatalf("enroll: no certificate PEM in %s", raw)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// hook sends a broker hook request with the hook secret and checks the
// answer's body.
func (g *gatehouse) hook(t *testing.T, path string, body any, want string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, "http://"+g.hooksAddr+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gatehouse-Hook-Secret", g.hookSecret)
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if got := strings.TrimSpace(string(raw)); resp.StatusCode != http.StatusOK || got != want {
		t.Fatalf("%s: HTTP %d %s, want %s", path, resp.StatusCode, got, want)
	}
}

// ocsp asks the server's OCSP responder about cert.
func (g *gatehouse) ocsp(t *testing.T, cert *x509.Certificate) int {
	t.Helper()
	pemData, err := os.ReadFile(filepath.Join(g.data, "ca", "intermediate_ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemData)
	issuer, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := xocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := g.client.Post(g.server+"/ocsp", "application/ocsp-request", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r, err := xocsp.ParseResponseForCert(raw, cert, issuer)
	if err != nil {
		t.Fatalf("OCSP answer: %v", err)
	}
	return r.Status
}
