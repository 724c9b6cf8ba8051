package metrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/metrics"
)

// benchCore is a core with n devices whose grants are warm, observed by m
// (nil: no observer).
func benchCore(b testing.TB, m *metrics.Metrics, n int) (*authz.Authorizer, []string) {
	a := newCore(b, m)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%06d", i)
		upsert(a, ids[i])
		if d, err := a.Authorize(context.Background(), pubReq(ids[i], "warm")); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
	return a, ids
}

func pubReq(id, leaf string) authz.Request {
	return authz.Request{Action: authz.Publish, Identity: id, ClientID: id, Dialect: "emqx",
		Topic: "fleets/plant/devices/" + id + "/telemetry/" + leaf}
}

// BenchmarkDecisionObserved is the decision hot path without an observer
// and with Metrics as the observer, in one run: cached (the same request
// again) and uncached (a new topic each time, grants warm).
func BenchmarkDecisionObserved(b *testing.B) {
	for _, observed := range []bool{false, true} {
		var m *metrics.Metrics
		name := "none"
		if observed {
			m, name = metrics.New(metrics.Config{}), "metrics"
		}
		a, ids := benchCore(b, m, 1000)
		ctx := context.Background()
		b.Run(name+"/cached", func(b *testing.B) {
			r := pubReq(ids[0], "warm")
			b.ReportAllocs()
			for b.Loop() {
				if d, err := a.Authorize(ctx, r); err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
		})
		b.Run(name+"/uncached", func(b *testing.B) {
			leaves := make([]string, 4096)
			for i := range leaves {
				leaves[i] = fmt.Sprintf("t%d", i)
			}
			reqs := make([]authz.Request, 0, 1<<16)
			for i := range cap(reqs) {
				reqs = append(reqs, pubReq(ids[i%len(ids)], leaves[(i/len(ids))%len(leaves)]+name))
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if d, err := a.Authorize(ctx, reqs[i%len(reqs)]); err != nil || !d.Allow {
					b.Fatal(d, err)
				}
				i++
			}
		})
	}
}

// TestObservedCachedDecisionAllocatesNothing: Metrics adds no allocation
// to a cached decision, allowed or denied, once its series exist.
func TestObservedCachedDecisionAllocatesNothing(t *testing.T) {
	m := metrics.New(metrics.Config{})
	a, ids := benchCore(t, m, 2)
	ctx := context.Background()
	for _, r := range []authz.Request{pubReq(ids[0], "warm"), pubReq(ids[0], "../x"), {Action: authz.Publish,
		Identity: ids[1], ClientID: ids[1], Dialect: "native", Topic: "fleets/plant/devices/" + ids[0] + "/telemetry"}} {
		if _, err := a.Authorize(ctx, r); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(200, func() { _, _ = a.Authorize(ctx, r) }); n != 0 {
			t.Errorf("%s %q: %v allocations per observed decision, want 0", r.Dialect, r.Topic, n)
		}
	}
}

// BenchmarkDecided is Metrics' own share of an observed decision: the
// label scans and the counter, with and without a sampled duration.
func BenchmarkDecided(b *testing.B) {
	m := metrics.New(metrics.Config{})
	b.Run("count", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Decided("emqx", authz.Publish, authz.ResultAllow, authz.ClassOK, -1)
		}
	})
	b.Run("count+duration", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Decided("emqx", authz.Publish, authz.ResultDeny, authz.ClassNoGrant, time.Microsecond)
		}
	})
}
