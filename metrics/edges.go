package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/enroll"
)

// What the HTTP edges and enrollment report (api.Observer, hooks.Observer,
// enroll.Observer). These paths cost an HTTP request each, so label
// lookups by name are fine here.

// Bounded label sets of the edges' metrics.
var (
	methodLabels = enum{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, labelOther}
	enrollKinds  = enum(append(enroll.Kinds(), labelOther))
	ocspOutcomes = enum{"good", "revoked", "unknown", "malformed", "error"} // anything else: error
)

// HTTPServed implements api.Observer. The route is the pattern the router
// matched (bounded by the route table); a method outside the standard ones
// is "other", since a client may send any token there.
func (m *Metrics) HTTPServed(route, method string, status int, dur time.Duration) {
	m.httpReqs.WithLabelValues(route, methodLabels.label(method), strconv.Itoa(status)).Inc()
	m.httpDur.WithLabelValues(route).Observe(dur.Seconds())
}

// Enrolled implements enroll.Observer: one enrollment or renewal the
// service ran, by kind and code ("ok", "repeated" or a fault code; a code
// neither fault nor idevid declares is "other": enroll.KnownCode).
func (m *Metrics) Enrolled(kind, code string) {
	m.enrollments.WithLabelValues(enrollKinds.label(kind), enrollCode(code)).Inc()
}

// enrollCode bounds an enrollment's code.
func enrollCode(code string) string {
	if enroll.KnownCode(code) {
		return code
	}
	return labelOther
}

// OCSPAnswered implements api.Observer.
func (m *Metrics) OCSPAnswered(outcome string) {
	m.ocsp.WithLabelValues(ocspOutcomes.label(outcome)).Inc()
}

// HookServed implements hooks.Observer: one hook request, end to end.
func (m *Metrics) HookServed(dialect string, dur time.Duration) {
	m.hookDur.WithLabelValues(dialectLabels.label(dialect)).Observe(dur.Seconds())
}

// Refused implements hooks.Observer: a request the hook edge answered
// itself, before the core (bad request, unauthenticated caller). It counts
// as a decision, with no core duration.
func (m *Metrics) Refused(dialect string, action authz.Action, result, reason string) {
	m.decisions.WithLabelValues(dialectLabels.label(dialect), actionLabels.label(string(action)),
		resultLabels[resultIndex(result)], reasonLabels.label(reason)).Inc()
}
