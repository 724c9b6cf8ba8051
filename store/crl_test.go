package store_test

import (
	"bytes"
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

func TestCRLStore(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			t.Run("RevokedCertificates", func(t *testing.T) { testRevokedCertificates(t, backend) })
			t.Run("StoreCRL", func(t *testing.T) { testStoreCRL(t, backend) })
			t.Run("StoreCRLRace", func(t *testing.T) { testStoreCRLRace(t, backend) })
		})
	}
}

func testRevokedCertificates(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := testdb.DSN(t, backend)
	s := open(t, dsn, nil)
	if got, err := s.RevokedCertificates(ctx, base); err != nil || len(got) != 0 {
		t.Fatalf("empty database: %v %v", got, err)
	}
	testdb.SeedCertificates(t, dsn, []testdb.Cert{
		{Serial: "a1", NotAfter: base.Add(time.Hour)},                                                      // active
		{Serial: "a2", NotAfter: base.Add(time.Hour), Status: "superseded"},                                // superseded, not revoked
		{Serial: "b1", NotAfter: base.Add(time.Hour), RevokedAt: base.Add(-time.Minute), Reason: 1},        // revoked, valid
		{Serial: "b2", NotAfter: base.Add(-30 * time.Minute), RevokedAt: base.Add(-time.Hour), Reason: 5},  // expired recently
		{Serial: "b3", NotAfter: base.Add(-2 * time.Hour), RevokedAt: base.Add(-3 * time.Hour), Reason: 4}, // expired long ago
	})
	if err := s.RevokeCertificate(ctx, "a1", 3, base); err != nil {
		t.Fatal(err)
	}
	got, err := s.RevokedCertificates(ctx, base.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Serial < got[j].Serial })
	want := []store.RevokedCert{
		{Serial: "a1", RevokedAt: base, Reason: 3, NotAfter: base.Add(time.Hour)},
		{Serial: "b1", RevokedAt: base.Add(-time.Minute), Reason: 1, NotAfter: base.Add(time.Hour)},
		{Serial: "b2", RevokedAt: base.Add(-time.Hour), Reason: 5, NotAfter: base.Add(-30 * time.Minute)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %+v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// An error from the callback stops the walk and comes back.
	stop := fault.New(fault.Conflict, "stop")
	n := 0
	if err := s.EachRevokedCertificate(ctx, base.Add(-time.Hour), func(store.RevokedCert) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("callback error: got %v after %d calls", err, n)
	}
}

func testStoreCRL(t *testing.T, backend string) {
	ctx := context.Background()
	s := open(t, testdb.DSN(t, backend), nil)
	if _, err := s.GetCRL(ctx); !fault.Is(err, fault.NotFound) {
		t.Fatalf("GetCRL on empty: %v", err)
	}
	if n, err := s.CRLNumber(ctx); err != nil || n != 0 {
		t.Fatalf("CRLNumber on empty: %d %v", n, err)
	}
	crl := func(n int64) store.CRL {
		return store.CRL{Number: n, ThisUpdate: base, NextUpdate: base.Add(24 * time.Hour), Entries: int(n) * 10,
			DER: bytes.Repeat([]byte{byte(n), 0, 0xff}, 100)}
	}
	steps := []struct {
		crl  store.CRL
		code fault.Code // "" = stored
		want int64      // stored number afterwards
	}{
		{store.CRL{Number: 0, DER: []byte{1}}, fault.InvalidArgument, 0},
		{store.CRL{Number: 1}, fault.InvalidArgument, 0},
		{crl(1), "", 1},
		{crl(1), fault.Conflict, 1},
		{crl(3), "", 3},
		{crl(2), fault.Conflict, 3},
		{crl(4), "", 4},
	}
	for i, st := range steps {
		err := s.StoreCRL(ctx, st.crl)
		if fault.CodeOf(err) != st.code {
			t.Fatalf("step %d: StoreCRL(%d): got %v, want code %q", i, st.crl.Number, err, st.code)
		}
		if n, err := s.CRLNumber(ctx); err != nil || n != st.want {
			t.Fatalf("step %d: stored number %d (%v), want %d", i, n, err, st.want)
		}
	}
	got, err := s.GetCRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := crl(4)
	if got.Number != 4 || !got.ThisUpdate.Equal(want.ThisUpdate) || !got.NextUpdate.Equal(want.NextUpdate) ||
		got.Entries != 40 || !bytes.Equal(got.DER, want.DER) {
		t.Fatalf("GetCRL: got %+v", got)
	}
}

// testStoreCRLRace stores numbers 1..n from as many goroutines (two store
// handles, like two replicas): whatever the interleaving, the highest wins.
func testStoreCRLRace(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := testdb.DSN(t, backend)
	replicas := []*store.Store{open(t, dsn, nil), open(t, dsn, nil)}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n+1)
	for i := n; i >= 1; i-- {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = replicas[i%2].StoreCRL(ctx, store.CRL{Number: int64(i), ThisUpdate: base,
				NextUpdate: base.Add(time.Hour), DER: []byte{byte(i)}})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !fault.Is(err, fault.Conflict) {
			t.Errorf("store %d: %v", i, err)
		}
	}
	if errs[n] != nil {
		t.Errorf("the highest number was refused: %v", errs[n])
	}
	for _, r := range replicas {
		got, err := r.GetCRL(ctx)
		if err != nil || got.Number != n || !bytes.Equal(got.DER, []byte{n}) {
			t.Fatalf("after the race: %+v %v", got, err)
		}
	}
}
