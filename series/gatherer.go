package series

import (
	"fmt"
	"math"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The metric families the series reads: the names and labels are the
// contract with package metrics.
const (
	// DecisionsFamily has labels dialect, action, result (allow, deny,
	// error) and reason (a bounded class).
	DecisionsFamily = "gatehouse_decisions_total"
	// EnrollmentsFamily has labels kind (enroll, enroll_idevid, renew) and code ("ok" or
	// a fault code).
	EnrollmentsFamily = "gatehouse_enrollments_total"
	// simulateDialect (authz.DialectSimulate, not imported for one
	// string) labels the what-if decisions of the policy editor: an
	// operator's question, not a broker's traffic, so not charted.
	simulateDialect = "simulate"
	// repeatedCode is an enrollment retry answered with its certificate.
	repeatedCode = "repeated"
)

// FromGatherer reads the totals from the decision and enrollment counter
// families of g, summed over the labels the charts do not split by.
func FromGatherer(g prometheus.Gatherer) Source { return gatherer{g} }

type gatherer struct{ g prometheus.Gatherer }

var _ Source = gatherer{}

// Totals gathers g. A family with no series yet is zero; but when Gather
// also failed, a missing family may be one that failed, and reading it
// as zero would later count all of it a second time (as growth after a
// "reset"): the sample is skipped instead.
func (s gatherer) Totals() (Totals, error) {
	mfs, gerr := s.g.Gather()
	t := Totals{DenyReasons: map[string]uint64{}}
	seen := 0
	for _, mf := range mfs {
		var err error
		switch mf.GetName() {
		case DecisionsFamily:
			err = eachCounter(mf, t.addDecision)
		case EnrollmentsFamily:
			err = eachCounter(mf, t.addEnrollment)
		default:
			continue
		}
		if err != nil {
			return Totals{}, err
		}
		seen++
	}
	if gerr != nil && seen < 2 {
		return Totals{}, fmt.Errorf("gather metrics: %w", gerr)
	}
	return t, nil
}

func (t *Totals) addDecision(labels map[string]string, n uint64) {
	if labels["dialect"] == simulateDialect {
		return
	}
	switch labels["result"] {
	case "allow":
		t.Allow += n
		return
	case "deny":
		t.Deny += n
	default:
		// error, or a result the contract does not name: not an allow,
		// so the broker refused it.
		t.Error += n
	}
	reason := labels["reason"]
	if reason == "" {
		reason = "other"
	}
	t.DenyReasons[reason] += n
}

func (t *Totals) addEnrollment(labels map[string]string, n uint64) {
	switch {
	case labels["code"] == repeatedCode:
		// A retry answered with the certificate already issued: counted
		// when it was issued, and no failure.
	case labels["code"] != "ok":
		t.EnrollFailed += n
	case labels["kind"] == "renew":
		t.Renewed += n
	default:
		t.Enrolled += n
	}
}

// eachCounter calls add with each series' labels and value; a family that
// is not a counter, or a value no counter can have, is an error.
func eachCounter(mf *dto.MetricFamily, add func(map[string]string, uint64)) error {
	if mf.GetType() != dto.MetricType_COUNTER {
		return fmt.Errorf("metric %s is a %s, not a counter", mf.GetName(), mf.GetType())
	}
	for _, m := range mf.GetMetric() {
		v := m.GetCounter().GetValue()
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metric %s has the value %v", mf.GetName(), v)
		}
		labels := make(map[string]string, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		add(labels, uint64(math.Round(v)))
	}
	return nil
}
