package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/metrics"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// The observers wire.go hands Metrics to.
var (
	_ authz.Observer = (*metrics.Metrics)(nil)
	_ hooks.Observer = (*metrics.Metrics)(nil)
	_ api.Observer   = (*metrics.Metrics)(nil)
)

var now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// value returns the value of the series of family name whose labels are
// exactly labels (counter, gauge, or a histogram's count); 0 when absent.
func value(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	for _, mf := range gather(t, g) {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

func gather(t testing.TB, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// seriesCount counts the series of every gatehouse_ family.
func seriesCount(t testing.TB, g prometheus.Gatherer) int {
	t.Helper()
	n := 0
	for _, mf := range gather(t, g) {
		if strings.HasPrefix(mf.GetName(), "gatehouse_") {
			n += len(mf.GetMetric())
		}
	}
	return n
}

func decisionLabels(dialect, action, result, reason string) map[string]string {
	return map[string]string{"dialect": dialect, "action": action, "result": result, "reason": reason}
}

func TestDecidedLabels(t *testing.T) {
	cases := []struct {
		name                           string
		dialect, action, result, class string
		want                           map[string]string
	}{
		{"known", "emqx", "publish", authz.ResultAllow, authz.ClassOK, decisionLabels("emqx", "publish", "allow", "ok")},
		{"deny", "native", "subscribe", authz.ResultDeny, authz.ClassNoGrant, decisionLabels("native", "subscribe", "deny", "no_grant")},
		{"unknown dialect", "fleet-7/dev-9", "connect", authz.ResultDeny, authz.ClassStale, decisionLabels("other", "connect", "deny", "stale")},
		{"unknown action", "vernemq", "sing", authz.ResultError, authz.ClassPolicyError, decisionLabels("vernemq", "other", "error", "policy_error")},
		{"free-text reason", "mosquitto", "read", authz.ResultDeny, "device dev-42 said no", decisionLabels("mosquitto", "read", "deny", "other")},
		{"unknown result", "rabbitmq", "connect", "maybe", authz.ClassOK, decisionLabels("rabbitmq", "connect", "error", "ok")},
		{"no dialect", "", "connect", authz.ResultAllow, authz.ClassOK, decisionLabels("other", "connect", "allow", "ok")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New(metrics.Config{})
			for range 3 {
				m.Decided(tc.dialect, authz.Action(tc.action), tc.result, tc.class, 3*time.Microsecond)
			}
			if got := value(t, m.Gatherer(), "gatehouse_decisions_total", tc.want); got != 3 {
				t.Fatalf("decisions %v = %v, want 3", tc.want, got)
			}
			hist := map[string]string{"dialect": tc.want["dialect"]}
			if got := value(t, m.Gatherer(), "gatehouse_decision_duration_seconds", hist); got != 3 {
				t.Fatalf("duration count %v = %v, want 3", hist, got)
			}
		})
	}
}

func TestRefusedCountsWithoutCoreDuration(t *testing.T) {
	m := metrics.New(metrics.Config{})
	m.Refused("emqx", authz.Publish, authz.ResultError, authz.ClassBadRequest)
	m.Refused("emqx", authz.Publish, authz.ResultError, authz.ClassBadRequest)
	if got := value(t, m.Gatherer(), "gatehouse_decisions_total", decisionLabels("emqx", "publish", "error", "bad_request")); got != 2 {
		t.Fatalf("refusals = %v, want 2", got)
	}
	if got := value(t, m.Gatherer(), "gatehouse_decision_duration_seconds", map[string]string{"dialect": "emqx"}); got != 0 {
		t.Fatalf("a refusal never reached the core, yet the core's duration counted %v", got)
	}
}

func TestEdgeLabelsBounded(t *testing.T) {
	m := metrics.New(metrics.Config{})
	m.HTTPServed("/api/v1/devices/:id", "BREW", 418, time.Millisecond)
	m.HTTPServed("/api/v1/devices/:id", "GET", 200, time.Millisecond)
	m.Enrolled("enroll", "ok")
	m.Enrolled("reenroll", "token_used")
	m.Enrolled("renew_expired", "repeated")
	m.Enrolled("idevid", "dev-secret-42") // a code fault does not declare
	m.OCSPAnswered("good")
	m.OCSPAnswered("perhaps")
	m.HookServed("emqx", time.Millisecond)
	m.HookServed("zigbee", time.Millisecond)
	g := m.Gatherer()
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"gatehouse_http_requests_total", map[string]string{"route": "/api/v1/devices/:id", "method": "other", "code": "418"}},
		{"gatehouse_http_requests_total", map[string]string{"route": "/api/v1/devices/:id", "method": "GET", "code": "200"}},
		{"gatehouse_http_request_duration_seconds", map[string]string{"route": "/api/v1/devices/:id"}},
		{"gatehouse_enrollments_total", map[string]string{"kind": "enroll", "code": "ok"}},
		{"gatehouse_enrollments_total", map[string]string{"kind": "other", "code": "token_used"}},
		{"gatehouse_enrollments_total", map[string]string{"kind": "renew_expired", "code": "repeated"}},
		{"gatehouse_enrollments_total", map[string]string{"kind": "idevid", "code": "other"}},
		{"gatehouse_ocsp_responses_total", map[string]string{"status": "good"}},
		{"gatehouse_ocsp_responses_total", map[string]string{"status": "error"}},
		{"gatehouse_hook_request_duration_seconds", map[string]string{"dialect": "emqx"}},
		{"gatehouse_hook_request_duration_seconds", map[string]string{"dialect": "other"}},
	} {
		want := 1.0
		if c.name == "gatehouse_http_request_duration_seconds" {
			want = 2
		}
		if got := value(t, g, c.name, c.labels); got != want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, want)
		}
	}
}

func newCore(t testing.TB, m *metrics.Metrics) *authz.Authorizer {
	t.Helper()
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	// A shared, busy machine must not turn a slow first evaluation into a
	// policy_timeout deny.
	cfg := authz.Config{Now: func() time.Time { return now }, EvalTimeout: time.Minute}
	if m != nil {
		cfg.Observer = m
	}
	a := authz.New(cfg)
	a.SetPolicy(p, 1)
	return a
}

func upsert(a *authz.Authorizer, id string) {
	a.UpsertDevice(authz.Device{ID: id, Fleet: "plant", Profile: "sensor", Roles: []string{"telemetry"},
		Active: true, Status: "active", CertNotAfter: now.Add(time.Hour)})
}

// TestCardinalityBounded feeds a thousand distinct devices and topics,
// allowed and denied, through the real core: once every kind of decision
// has been seen, the number of series does not move.
func TestCardinalityBounded(t *testing.T) {
	m := metrics.New(metrics.Config{})
	a := newCore(t, m)
	m.Watch(metrics.Sources{Core: a})
	ctx := context.Background()
	round := func(i int) {
		id := fmt.Sprintf("dev-%d", i)
		upsert(a, id)
		for _, r := range []authz.Request{
			{Action: authz.Connect, Identity: id, ClientID: id, Dialect: "emqx"},
			{Action: authz.Publish, Identity: id, ClientID: id, Dialect: "emqx", Topic: fmt.Sprintf("fleets/plant/devices/%s/telemetry/t%d", id, i)},
			{Action: authz.Publish, Identity: id, ClientID: id, Dialect: "emqx", Topic: fmt.Sprintf("fleets/plant/devices/other-%d/telemetry", i)},
			{Action: authz.Subscribe, Identity: id, ClientID: id, Dialect: "native", Topic: fmt.Sprintf("x/%d/#", i)},
			{Action: authz.Connect, Identity: "ghost-" + id, ClientID: "ghost-" + id, Dialect: id},
		} {
			if _, err := a.Authorize(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		m.HTTPServed("/api/v1/devices/:id", "GET", 200, time.Millisecond)
	}
	round(0)
	before := seriesCount(t, m.Gatherer())
	for i := 1; i <= 1000; i++ {
		round(i)
	}
	if after := seriesCount(t, m.Gatherer()); after != before {
		t.Fatalf("series grew with devices and topics: %d before, %d after 1000 more", before, after)
	}
	if got := value(t, m.Gatherer(), "gatehouse_decisions_total", decisionLabels("emqx", "publish", "allow", "ok")); got != 1001 {
		t.Fatalf("allowed publishes = %v, want 1001", got)
	}
	if got := value(t, m.Gatherer(), "gatehouse_decisions_total", decisionLabels("other", "connect", "deny", "unknown_device")); got != 1001 {
		t.Fatalf("unknown devices under made-up dialects = %v, want 1001", got)
	}
	for _, mf := range gather(t, m.Gatherer()) {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if strings.Contains(l.GetValue(), "dev-") {
					t.Fatalf("%s carries a device id as label %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestHandlerServesExposition(t *testing.T) {
	m := metrics.New(metrics.Config{})
	m.Decided("native", authz.Connect, authz.ResultAllow, authz.ClassOK, time.Microsecond)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	body := string(b)
	for _, want := range []string{
		`gatehouse_decisions_total{action="connect",dialect="native",reason="ok",result="allow"} 1`,
		"go_goroutines ", "process_start_time_seconds ", "gatehouse_grant_computations_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// TestREADMEListsEveryMetric: the README's Metrics table names exactly the
// gatehouse_ families the registry exports.
func TestREADMEListsEveryMetric(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Metrics\n")
	if !ok {
		t.Fatal("README.md has no ## Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string]bool{}
	for _, name := range regexp.MustCompile("`(gatehouse_[a-z_]+)`").FindAllStringSubmatch(section, -1) {
		documented[name[1]] = true
	}
	m := metrics.New(metrics.Config{Now: func() time.Time { return now }})
	m.Watch(metrics.Sources{Core: fakeCore{synced: now}, CRL: fakeCRL{crl.Status{Number: 1, ThisUpdate: now}}, Kicks: &fakeKicks{}})
	// Vectors export a family once a series exists.
	m.Decided("emqx", authz.Connect, authz.ResultAllow, authz.ClassOK, time.Microsecond)
	m.HTTPServed("/x", "GET", 200, time.Millisecond)
	m.Enrolled("enroll", "ok")
	m.OCSPAnswered("good")
	m.HookServed("emqx", time.Millisecond)
	exported := map[string]bool{}
	for _, mf := range gather(t, m.Gatherer()) {
		if strings.HasPrefix(mf.GetName(), "gatehouse_") {
			exported[mf.GetName()] = true
		}
	}
	if len(exported) != 18 {
		t.Errorf("%d gatehouse_ families exported, want the 18 of the contract", len(exported))
	}
	for name := range exported {
		if !documented[name] {
			t.Errorf("%s is exported but not in the README's Metrics table", name)
		}
	}
	for name := range documented {
		if !exported[name] {
			t.Errorf("the README documents %s, which is not exported", name)
		}
	}
}

// TestConcurrentDecisionsExact: goroutines racing to create and bump the
// same series through the real core lose no count.
func TestConcurrentDecisionsExact(t *testing.T) {
	m := metrics.New(metrics.Config{})
	a := newCore(t, m)
	m.Watch(metrics.Sources{Core: a})
	ids := []string{"dev-a", "dev-b", "dev-c"}
	for _, id := range ids {
		upsert(a, id)
	}
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := ids[(w+i)%len(ids)]
				r := authz.Request{Action: authz.Publish, Identity: id, ClientID: id, Dialect: []string{"emqx", "native"}[i%2],
					Topic: fmt.Sprintf("fleets/plant/devices/%s/telemetry/%d", id, i%7)}
				if _, err := a.Authorize(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	g := m.Gatherer()
	emqx := value(t, g, "gatehouse_decisions_total", decisionLabels("emqx", "publish", "allow", "ok"))
	native := value(t, g, "gatehouse_decisions_total", decisionLabels("native", "publish", "allow", "ok"))
	if emqx != workers*each/2 || native != workers*each/2 {
		t.Fatalf("emqx %v, native %v; want %d each", emqx, native, workers*each/2)
	}
	hits := value(t, g, "gatehouse_decision_cache_requests_total", map[string]string{"result": "hit"})
	misses := value(t, g, "gatehouse_decision_cache_requests_total", map[string]string{"result": "miss"})
	if hits+misses != workers*each {
		t.Fatalf("cache lookups %v+%v, want %d", hits, misses, workers*each)
	}
}
