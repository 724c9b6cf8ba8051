package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/series"
	"github.com/gatehouse-iot/gatehouse/store"
)

// withTraffic feeds the charts' series from reg, on the stack's clock.
func withTraffic(reg prometheus.Gatherer) stackOpt {
	return func(c *stackCfg) {
		c.build = func(t testing.TB, _ *store.Store, _ *ca.CA, _ *audit.Recorder, cfg *api.Config) {
			s, err := series.New(series.Config{Source: series.FromGatherer(reg)})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Traffic = s
		}
	}
}

// TestTrafficSeries: GET /stats/series answers the counters' growth per
// step, one bucket per step, for viewers; a bad window is invalid_argument.
func TestTrafficSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: series.DecisionsFamily, Help: "d"},
		[]string{"dialect", "action", "result", "reason"})
	enrollments := prometheus.NewCounterVec(prometheus.CounterOpts{Name: series.EnrollmentsFamily, Help: "e"}, []string{"kind", "code"})
	reg.MustRegister(decisions, enrollments)
	s := newStack(t, testdb.SQLite(t), withTraffic(reg))

	decisions.WithLabelValues("native", "publish", "allow", "ok").Add(5)
	decisions.WithLabelValues("native", "publish", "deny", "no_grant").Add(2)
	decisions.WithLabelValues("emqx", "connect", "deny", "not_active").Add(1)
	enrollments.WithLabelValues("enroll", "ok").Add(3)
	enrollments.WithLabelValues("enroll", "token_used").Add(1)

	for _, tc := range []struct {
		query string
		n     int
		step  int64
	}{{"", 60, 60}, {"?window=hour", 60, 60}, {"?window=day", 24, 3600}} {
		var out apitypes.TrafficSeries
		s.call(t, "GET", "/api/v1/stats/series"+tc.query, s.viewer, nil, http.StatusOK, &out)
		if len(out.Buckets) != tc.n || out.StepSeconds != tc.step || out.SampledAt == nil {
			t.Fatalf("%q: %d buckets of %ds, sampled at %v; want %d of %ds", tc.query, len(out.Buckets), out.StepSeconds, out.SampledAt, tc.n, tc.step)
		}
		last := out.Buckets[tc.n-1]
		want := apitypes.TrafficCount{Start: last.Start, Allow: 5, Deny: 3, Enrolled: 3, EnrollFailed: 1}
		if last != want || time.Since(last.Start) > time.Duration(tc.step)*time.Second {
			t.Errorf("%q: last bucket %+v, want %+v, starting within the last step", tc.query, last, want)
		}
		if len(out.DenyReasons) != 2 || out.DenyReasons[0] != (apitypes.ReasonCount{Reason: "no_grant", Count: 2}) ||
			out.DenyReasons[1] != (apitypes.ReasonCount{Reason: "not_active", Count: 1}) {
			t.Errorf("%q: deny reasons %+v", tc.query, out.DenyReasons)
		}
	}
	for _, q := range []string{"?window=week", "?window=HOUR", "?window=%00"} {
		wantError(t, s.send(t, request{method: "GET", path: "/api/v1/stats/series" + q, bearer: s.viewer}), http.StatusBadRequest, fault.InvalidArgument)
	}
	wantError(t, s.send(t, request{method: "GET", path: "/api/v1/stats/series"}), http.StatusUnauthorized, fault.Unauthenticated)
}
