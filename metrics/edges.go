package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// What the HTTP edges report (api.Observer, hooks.Observer). These paths
// cost an HTTP request each, so label lookups by name are fine here.

// Bounded label sets of the edges' metrics.
var (
	methodLabels   = newEnum([]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, labelOther})
	enrollKinds    = newEnum([]string{"enroll", "renew", labelOther})
	ocspOutcomes   = newEnum([]string{"good", "revoked", "unknown", "malformed", "error"})
	dialectIndexes = newEnum(dialectLabels)
)

// HTTPServed implements api.Observer. The route is the pattern the router
// matched (bounded by the route table); a method outside the standard ones
// is "other", since a client may send any token there.
func (m *Metrics) HTTPServed(route, method string, status int, dur time.Duration) {
	method = methodLabel(method)
	m.httpReqs.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.httpDur.WithLabelValues(route).Observe(dur.Seconds())
}

func methodLabel(method string) string {
	if _, ok := methodLabels[method]; ok {
		return method
	}
	return labelOther
}

// Enrolled implements api.Observer. Codes are fault codes, a fixed set of
// constants, plus "ok" and "repeated".
func (m *Metrics) Enrolled(kind, code string) {
	if _, ok := enrollKinds[kind]; !ok {
		kind = labelOther
	}
	m.enrollments.WithLabelValues(kind, code).Inc()
}

// OCSPAnswered implements api.Observer.
func (m *Metrics) OCSPAnswered(outcome string) {
	if _, ok := ocspOutcomes[outcome]; !ok {
		outcome = "error"
	}
	m.ocsp.WithLabelValues(outcome).Inc()
}

// HookServed implements hooks.Observer: one hook request, end to end.
func (m *Metrics) HookServed(dialect string, dur time.Duration) {
	m.hookDur.WithLabelValues(dialectLabels[dialectIndexes.index(dialect)]).Observe(dur.Seconds())
}

// Refused implements hooks.Observer: a request the hook edge answered
// itself, before the core (bad request, unauthenticated caller). It counts
// as a decision, with no core duration.
func (m *Metrics) Refused(dialect string, action authz.Action, result, reason string) {
	s := m.fast
	m.decisions.WithLabelValues(dialectLabels[s.dialects.index(dialect)], actionLabels[s.actions.index(string(action))],
		resultLabels[resultIndex(result)], reasonLabels[s.reasons.index(reason)]).Inc()
}
