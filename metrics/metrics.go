// Package metrics is Gatehouse's Prometheus instrumentation: one registry
// per process (never the client library's global one), the Go runtime and
// process collectors, and the counters, histograms and gauges the other
// packages feed through the small observer interfaces they declare
// (authz.Observer, hooks.Observer, api.Observer, enroll.Observer), so none
// of them imports Prometheus.
//
// Every label takes its value from a fixed set: a value outside it is
// recorded as "other". No device id, topic, serial or client id is ever a
// label, so the number of series does not grow with the fleet.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// Config configures Metrics.
type Config struct {
	// Now is the clock of the ages (CRL age, sync staleness); default
	// time.Now.
	Now func() time.Time
	// KickCountEvery is how long one count of the session-kick queue is
	// served before the store is asked again; default and minimum 5s, so
	// scrapes cannot hammer the database.
	KickCountEvery time.Duration
	// KickCountTimeout bounds one count; default 2s.
	KickCountTimeout time.Duration
}

// Names of the families an in-process reader of Gatherer looks for (the
// dashboard's time series); the README's Metrics section lists them all.
const (
	// NameDecisions: counter, labels dialect, action, result, reason.
	NameDecisions = "gatehouse_decisions_total"
	// NameEnrollments: counter, labels kind (enroll.Kinds), code.
	NameEnrollments = "gatehouse_enrollments_total"
)

// Defaults of Config.
const (
	DefaultKickCountEvery   = 5 * time.Second
	DefaultKickCountTimeout = 2 * time.Second
)

// Metrics holds the registry and every metric Gatehouse exports. Its
// methods are safe for concurrent use.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	decisions   *prometheus.CounterVec
	decisionDur *prometheus.HistogramVec
	hookDur     *prometheus.HistogramVec
	grants      prometheus.Counter
	grantDur    prometheus.Histogram
	enrollments *prometheus.CounterVec
	ocsp        *prometheus.CounterVec
	httpReqs    *prometheus.CounterVec
	httpDur     *prometheus.HistogramVec

	// fast holds the decision series resolved once, so the decision path
	// pays an index computation and an atomic add, not a label hash.
	fast *decisionSeries
}

// New builds the registry with the Go runtime and process collectors and
// every Gatehouse metric. Gauges read from other components at scrape time
// are added by Watch.
func New(cfg Config) *Metrics {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.KickCountEvery = max(cfg.KickCountEvery, DefaultKickCountEvery)
	if cfg.KickCountTimeout <= 0 {
		cfg.KickCountTimeout = DefaultKickCountTimeout
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.decisions = m.counterVec(NameDecisions,
		"Decisions by broker dialect, action, result (allow, deny, error) and reason class.", "dialect", "action", "result", "reason")
	m.decisionDur = m.histogramVec("gatehouse_decision_duration_seconds",
		"Time the decision core took for one decision, by dialect; a random sample of one decision in 8 is timed.", decisionBuckets, "dialect")
	m.hookDur = m.histogramVec("gatehouse_hook_request_duration_seconds",
		"Time one broker hook HTTP request took end to end, by dialect.", hookBuckets, "dialect")
	m.grants = m.counter("gatehouse_grant_computations_total", "Policy evaluations of a device's grants.")
	m.grantDur = m.histogram("gatehouse_grant_computation_duration_seconds",
		"Time one policy evaluation of a device's grants took.", grantBuckets)
	m.enrollments = m.counterVec(NameEnrollments,
		`Enrollments and renewals the enrollment service ran, by kind (enroll, renew, renew_expired, idevid, serverkeygen) and result code ("ok", "repeated" or the fault code).`, "kind", "code")
	m.ocsp = m.counterVec("gatehouse_ocsp_responses_total",
		"OCSP responses by outcome (good, revoked, unknown, malformed, error).", "status")
	m.httpReqs = m.counterVec("gatehouse_http_requests_total",
		`API requests by route pattern ("unmatched" when no route took it), method and status code.`, "route", "method", "code")
	m.httpDur = m.histogramVec("gatehouse_http_request_duration_seconds",
		"Time one API request took, by route pattern.", httpBuckets, "route")
	m.fast = newDecisionSeries(m.decisions, m.decisionDur)
	return m
}

// Histogram buckets, in seconds. A cached decision takes well under a
// microsecond and a cold one tens; a hook request adds HTTP and the
// broker's network; a grant evaluation is cut off at 100ms by default.
var (
	decisionBuckets = prometheus.ExponentialBuckets(1e-6, 4, 10)  // 1µs … 262ms
	hookBuckets     = prometheus.ExponentialBuckets(25e-6, 4, 10) // 25µs … 6.5s
	grantBuckets    = prometheus.ExponentialBuckets(10e-6, 4, 9)  // 10µs … 655ms
	httpBuckets     = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

func (m *Metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	m.reg.MustRegister(h)
	return h
}

func (m *Metrics) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	m.reg.MustRegister(h)
	return h
}

// Handler serves the registry in the Prometheus exposition format (GET
// /metrics on the diagnostics listener). A collector that fails is
// reported in the answer, and the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Gatherer reads the current values without HTTP, for in-process
// consumers (the dashboard's time series): families by name, cumulative.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// The observers Metrics implements.
var (
	_ authz.Observer = (*Metrics)(nil)
)

// Decided implements authz.Observer: one decision of the core.
func (m *Metrics) Decided(dialect string, action authz.Action, result, reason string, dur time.Duration) {
	m.fast.decided(dialect, action, result, reason, dur)
}

// GrantsComputed implements authz.Observer.
func (m *Metrics) GrantsComputed(dur time.Duration) {
	m.grants.Inc()
	m.grantDur.Observe(dur.Seconds())
}
