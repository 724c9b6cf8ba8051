package series_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-iot/gatehouse/series"
)

// contract registers the two counter families package metrics exposes,
// with the names and labels of the contract.
func contract(t *testing.T, reg *prometheus.Registry) (decisions, enrollments *prometheus.CounterVec) {
	t.Helper()
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: series.DecisionsFamily, Help: "decisions"},
		[]string{"dialect", "action", "result", "reason"})
	enrollments = prometheus.NewCounterVec(prometheus.CounterOpts{Name: series.EnrollmentsFamily, Help: "enrollments"},
		[]string{"kind", "code"})
	reg.MustRegister(decisions, enrollments, prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_unrelated_total", Help: "x"}))
	return decisions, enrollments
}

func TestFromGatherer(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := series.FromGatherer(reg)
	empty, err := src.Totals()
	if err != nil || empty.Counts != (series.Counts{}) || len(empty.DenyReasons) != 0 {
		t.Fatalf("no families registered: %+v, %v", empty, err)
	}
	dec, enr := contract(t, reg)
	for _, c := range []struct {
		labels []string
		n      float64
	}{
		{[]string{"native", "connect", "allow", "ok"}, 4},
		{[]string{"emqx", "publish", "allow", "ok"}, 3},
		{[]string{"native", "publish", "deny", "no_grant"}, 2},
		{[]string{"emqx", "publish", "deny", "no_grant"}, 1},
		{[]string{"native", "connect", "deny", "not_active"}, 5},
		{[]string{"native", "publish", "error", "policy_error"}, 1},
		{[]string{"emqx", "subscribe", "deny", "no_grant"}, 0},   // a series at zero
		{[]string{"simulate", "publish", "deny", "no_grant"}, 9}, // what-ifs are not traffic
		{[]string{"simulate", "connect", "allow", "ok"}, 9},
	} {
		dec.WithLabelValues(c.labels...).Add(c.n)
	}
	enr.WithLabelValues("enroll", "ok").Add(6)
	enr.WithLabelValues("renew", "ok").Add(2)
	enr.WithLabelValues("renew_expired", "ok").Add(3) // a sleepy device's renewal
	enr.WithLabelValues("idevid", "ok").Add(2)
	enr.WithLabelValues("serverkeygen", "ok").Add(1)
	enr.WithLabelValues("renew_expired", "certificate_invalid").Add(1)
	enr.WithLabelValues("enroll", "token_used").Add(1)
	enr.WithLabelValues("renew", "certificate_invalid").Add(3)
	enr.WithLabelValues("enroll", "repeated").Add(5) // counted when first issued

	got, err := src.Totals()
	if err != nil {
		t.Fatal(err)
	}
	want := series.Counts{Allow: 7, Deny: 8, Error: 1, Enrolled: 9, Renewed: 5, EnrollFailed: 5}
	if got.Counts != want {
		t.Errorf("counts %+v, want %+v", got.Counts, want)
	}
	if wantR := map[string]uint64{"no_grant": 3, "not_active": 5, "policy_error": 1}; fmt.Sprint(got.DenyReasons) != fmt.Sprint(wantR) {
		t.Errorf("deny reasons %v, want %v", got.DenyReasons, wantR)
	}
}

// failing is a collector whose collection fails, as one reading the
// database might.
type failing struct{ desc *prometheus.Desc }

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.desc, errors.New("database down"))
}

func TestFromGathererPartialFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	dec, enr := contract(t, reg)
	reg.MustRegister(failing{prometheus.NewDesc("gatehouse_failing", "x", nil, nil)})
	dec.WithLabelValues("native", "connect", "allow", "ok").Add(2)
	// No enrollment yet: that family has no series, and with Gather
	// failing its absence cannot be told from a failure: skip.
	if _, err := series.FromGatherer(reg).Totals(); err == nil {
		t.Fatal("a failed gather missing a family was read as zeros")
	}
	// Both families gathered: an unrelated failure does not stop the charts.
	enr.WithLabelValues("enroll", "ok").Inc()
	got, err := series.FromGatherer(reg).Totals()
	if err != nil || got.Allow != 2 || got.Enrolled != 1 {
		t.Fatalf("both families present despite a failing collector: %+v, %v", got.Counts, err)
	}
}

func TestFromGathererWrongType(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: series.DecisionsFamily, Help: "x"}, []string{"result"})
	g.WithLabelValues("allow").Set(3)
	reg.MustRegister(g)
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: series.EnrollmentsFamily, Help: "x"}, []string{"kind", "code"}))
	if _, err := series.FromGatherer(reg).Totals(); err == nil {
		t.Fatal("a gauge under the decisions counter's name was read")
	}
}

// The whole path: counters in a registry, sampled into the series.
func TestSeriesFromRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	dec, enr := contract(t, reg)
	s, err := series.New(series.Config{Source: series.FromGatherer(reg), Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	dec.WithLabelValues("native", "publish", "allow", "ok").Add(3)
	dec.WithLabelValues("native", "publish", "deny", "no_grant").Add(2)
	enr.WithLabelValues("enroll", "ok").Add(4)
	last := s.Snapshot(series.Hour).Buckets[59]
	if want := (series.Counts{Allow: 3, Deny: 2, Enrolled: 4}); last.Counts != want {
		t.Errorf("last bucket %+v, want %+v", last.Counts, want)
	}
}
