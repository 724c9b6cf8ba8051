package series_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gatehouse-iot/gatehouse/series"
)

// busyRegistry is a registry like the server's: the Go runtime and process
// collectors, and 300 decision and 20 enrollment series.
func busyRegistry(b *testing.B) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	dec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: series.DecisionsFamily, Help: "d"}, []string{"dialect", "action", "result", "reason"})
	enr := prometheus.NewCounterVec(prometheus.CounterOpts{Name: series.EnrollmentsFamily, Help: "e"}, []string{"kind", "code"})
	reg.MustRegister(dec, enr)
	for i := range 300 {
		dec.WithLabelValues([]string{"native", "emqx", "mosquitto"}[i%3], []string{"connect", "publish", "subscribe", "read", "other"}[i%5],
			[]string{"allow", "deny", "error"}[i%3], fmt.Sprintf("class-%d", i%20)).Add(float64(i))
	}
	for i := range 20 {
		enr.WithLabelValues([]string{"enroll", "renew"}[i%2], fmt.Sprintf("code-%d", i)).Inc()
	}
	return reg
}

// BenchmarkGather is the baseline: what any scrape of the registry costs.
func BenchmarkGather(b *testing.B) {
	reg := busyRegistry(b)
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSample is one sample of the series: a gather, the two families
// summed, the growth filed in both rings.
func BenchmarkSample(b *testing.B) {
	s, err := series.New(series.Config{Source: series.FromGatherer(busyRegistry(b))})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.Sample(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotDay is a reader's snapshot of the day window without a
// new sample (the last one is fresh).
func BenchmarkSnapshotDay(b *testing.B) {
	s, err := series.New(series.Config{Source: series.FromGatherer(busyRegistry(b))})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Sample(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = s.Snapshot(series.Day)
	}
}
