package store_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestRecordRestoredRevocations: a restore marks known certificates
// revoked (an earlier revocation keeps its time and reason) and keeps
// unknown serials, which the CRL walk lists until their NotAfter; twice is
// the same as once. On both databases.
func TestRecordRestoredRevocations(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			testdb.SeedCertificates(t, dsn, []testdb.Cert{
				{Serial: "a1", NotAfter: base.Add(time.Hour)},
				{Serial: "b1", NotAfter: base.Add(time.Hour), RevokedAt: base.Add(-time.Hour), Reason: 1},
			})
			in := []store.RevokedCert{
				{Serial: "a1", RevokedAt: base, Reason: 5, NotAfter: base.Add(24 * time.Hour)},
				{Serial: "b1", RevokedAt: base, Reason: 5, NotAfter: base.Add(24 * time.Hour)},
				{Serial: "c1", RevokedAt: base, Reason: 1, NotAfter: base.Add(24 * time.Hour)},
				{Serial: "c2", RevokedAt: base, Reason: 1, NotAfter: base.Add(-2 * time.Hour)},
			}
			for range 2 {
				got, err := s.RecordRestoredRevocations(ctx, in)
				if err != nil || got.Known != 2 || got.Unknown != 2 {
					t.Fatalf("recorded %+v %v", got, err)
				}
			}
			list, err := s.RevokedCertificates(ctx, base.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Serial < list[j].Serial })
			want := []store.RevokedCert{
				{Serial: "a1", RevokedAt: base, Reason: 5, NotAfter: base.Add(time.Hour)},
				{Serial: "b1", RevokedAt: base.Add(-time.Hour), Reason: 1, NotAfter: base.Add(time.Hour)},
				{Serial: "c1", RevokedAt: base, Reason: 1, NotAfter: base.Add(24 * time.Hour)},
			}
			if len(list) != len(want) {
				t.Fatalf("listed %+v, want %+v", list, want)
			}
			for i := range want {
				if list[i] != want[i] {
					t.Errorf("entry %d: %+v, want %+v", i, list[i], want[i])
				}
			}
			// OCSP reads one serial: the unknown ones only (a known
			// certificate's revocation is on its row).
			r, err := s.RestoredRevocation(ctx, "c1")
			if err != nil || r != in[2] {
				t.Errorf("RestoredRevocation(c1) = %+v, %v; want %+v", r, err, in[2])
			}
			for _, serial := range []string{"a1", "zz"} {
				if _, err := s.RestoredRevocation(ctx, serial); !fault.Is(err, fault.NotFound) {
					t.Errorf("RestoredRevocation(%s) = %v, want not_found", serial, err)
				}
			}
		})
	}
}
