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
	dialectLabels = enum{"native", "emqx", "vernemq", "mosquitto", "rabbitmq", authz.DialectSimulate, labelOther}
	actionLabels  = enum{string(authz.Publish), string(authz.Subscribe), string(authz.Read), string(authz.Connect), labelOther}
	resultLabels  = []string{authz.ResultAllow, authz.ResultDeny, authz.ResultError}
	reasonLabels  = enum(authz.ReasonClasses()) // starts with ok, ends with authz.ClassOther
)

// enum is a bounded label set whose last value stands for anything outside
// it ("other"). The sets are short and their common values come first, so a
// scan beats hashing the string.
type enum []string

// index returns v's index, or the last one.
func (e enum) index(v string) int {
	for i, x := range e[:len(e)-1] {
		if x == v {
			return i
		}
	}
	return len(e) - 1
}

// label returns v when e holds it, else e's last value.
func (e enum) label(v string) string { return e[e.index(v)] }

// decisionSeries resolves each decision counter once, lazily: a series
// exists only after its first decision, and from then on a decision costs
// three scans of short label sets and an atomic add (two when its latency
// is sampled), with no allocation and no lock.
type decisionSeries struct {
	counters *prometheus.CounterVec

	count []atomic.Pointer[prometheus.Counter]
	// dur holds every dialect's latency series from the start: a
	// sampled duration must not make a series appear at random later.
	dur []prometheus.Observer
}

func newDecisionSeries(c *prometheus.CounterVec, h *prometheus.HistogramVec) *decisionSeries {
	n := len(dialectLabels) * len(actionLabels) * len(resultLabels) * len(reasonLabels)
	s := &decisionSeries{counters: c, count: make([]atomic.Pointer[prometheus.Counter], n)}
	for _, d := range dialectLabels {
		s.dur = append(s.dur, h.WithLabelValues(d))
	}
	return s
}

func (s *decisionSeries) decided(dialect string, action authz.Action, result, reason string, dur time.Duration) {
	d := dialectLabels.index(dialect)
	a := actionLabels.index(string(action))
	r := resultIndex(result)
	c := reasonLabels.index(reason)
	i := ((d*len(actionLabels)+a)*len(resultLabels)+r)*len(reasonLabels) + c
	ctr := s.count[i].Load()
	if ctr == nil {
		v := s.counters.WithLabelValues(dialectLabels[d], actionLabels[a], resultLabels[r], reasonLabels[c])
		ctr = &v
		s.count[i].Store(ctr) // a racing store holds the same series
	}
	(*ctr).Inc()
	if dur < 0 { // not in the latency sample
		return
	}
	s.dur[d].Observe(dur.Seconds())
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
