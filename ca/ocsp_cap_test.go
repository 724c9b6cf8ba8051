package ca_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
)

// TestOCSPSignerCappedByIntermediate: near the intermediate's end the
// responder certificate is cut to the intermediate's notAfter, and a new
// one could not last longer; Current must keep it instead of certifying a
// fresh key on every call.
func TestOCSPSignerCappedByIntermediate(t *testing.T) {
	var clock atomic.Pointer[time.Time]
	c, _ := newCA(t, func(cfg *ca.Config) {
		cfg.Now = func() time.Time {
			if p := clock.Load(); p != nil {
				return *p
			}
			return time.Now()
		}
	})
	end := c.Intermediate().NotAfter
	set := func(t time.Time) { clock.Store(&t) }
	ctx := context.Background()
	set(end.Add(-30 * time.Hour))
	s, err := c.NewOCSPSigner(ctx, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Cert.NotAfter.Equal(end) {
		t.Fatalf("responder notAfter %v, want the intermediate's %v", first.Cert.NotAfter, end)
	}
	// Past the usual renewal point (a third of the validity before the end).
	set(end.Add(-10 * time.Hour))
	for i := range 3 {
		cred, err := s.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cred.Cert != first.Cert {
			t.Fatalf("call %d certified a new responder key (notAfter %v) though none can outlast the intermediate", i, cred.Cert.NotAfter)
		}
	}
}
