package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-iot/gatehouse/authz"
)

// labelOther is the value of any label whose input is outside its set.
const labelOther = "other"

// Label sets of gatehouse_decisions_total. Dialects are the hooks' dialects
// and the what-if simulation; reasons are authz's classes (which include
// the edge's refusals).
var (
	dialectLabels = []string{"native", "emqx", "vernemq", "mosquitto", "rabbitmq", authz.DialectSimulate, labelOther}
	actionLabels  = []string{string(authz.Connect), string(authz.Publish), string(authz.Subscribe), string(authz.Read), labelOther}
	resultLabels  = []string{authz.ResultAllow, authz.ResultDeny, authz.ResultError}
	reasonLabels  = authz.ReasonClasses() // ends with authz.ClassOther
)

// enum maps a bounded label set to indexes; anything else is the index of
// "other" (the last entry of the set).
type enum map[string]int

func newEnum(values []string) enum {
	e := make(enum, len(values))
	for i, v := range values {
		e[v] = i
	}
	return e
}

// index returns v's index, or other's: the last one.
func (e enum) index(v string) int {
	if i, ok := e[v]; ok {
		return i
	}
	return len(e) - 1
}

// decisionSeries resolves each decision series once, lazily: a series
// exists only after its first decision, and from then on a decision costs
// three map lookups of short strings and two atomic adds, with no
// allocation and no lock.
type decisionSeries struct {
	counters *prometheus.CounterVec
	hists    *prometheus.HistogramVec

	dialects, actions, reasons enum
	count                      []atomic.Pointer[prometheus.Counter]
	dur                        []atomic.Pointer[prometheus.Observer]
}

func newDecisionSeries(c *prometheus.CounterVec, h *prometheus.HistogramVec) *decisionSeries {
	n := len(dialectLabels) * len(actionLabels) * len(resultLabels) * len(reasonLabels)
	return &decisionSeries{counters: c, hists: h, dialects: newEnum(dialectLabels), actions: newEnum(actionLabels),
		reasons: newEnum(reasonLabels), count: make([]atomic.Pointer[prometheus.Counter], n),
		dur: make([]atomic.Pointer[prometheus.Observer], len(dialectLabels))}
}

func (s *decisionSeries) decided(dialect string, action authz.Action, result, reason string, dur time.Duration) {
	d := s.dialects.index(dialect)
	a := s.actions.index(string(action))
	r := resultIndex(result)
	c := s.reasons.index(reason)
	i := ((d*len(actionLabels)+a)*len(resultLabels)+r)*len(reasonLabels) + c
	ctr := s.count[i].Load()
	if ctr == nil {
		v := s.counters.WithLabelValues(dialectLabels[d], actionLabels[a], resultLabels[r], reasonLabels[c])
		ctr = &v
		s.count[i].Store(ctr) // a racing store holds the same series
	}
	(*ctr).Inc()
	h := s.dur[d].Load()
	if h == nil {
		v := s.hists.WithLabelValues(dialectLabels[d])
		h = &v
		s.dur[d].Store(h)
	}
	(*h).Observe(dur.Seconds())
}

// resultIndex places result in resultLabels; an unknown result is an error,
// the one that asks an operator to look.
func resultIndex(result string) int {
	switch result {
	case authz.ResultAllow:
		return 0
	case authz.ResultDeny:
		return 1
	}
	return 2
}
