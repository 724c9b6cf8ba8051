package ca_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// BenchmarkGenerateCRL measures the whole generation path for N revoked
// certificates: the store query (SQLite), encoding the list, signing it
// with the authority's signer, and storing it. Goal: 1M entries in ≤ 10 s.
//
//	go test ./ca -run '^$' -bench GenerateCRL -benchtime 1x -benchmem
func BenchmarkGenerateCRL(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			if n > 100_000 && testing.Short() {
				b.Skip("-short: skipping the million-entry list")
			}
			c, _, _, dsn := crlCA(b)
			certs := testdb.RevokedCerts(n, time.Now())
			seedStart := time.Now()
			testdb.SeedCertificates(b, dsn, certs)
			b.Logf("seeded %d revoked certificates in %s", n, time.Since(seedStart).Round(time.Millisecond))
			certs = nil
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				crl, err := c.GenerateCRL(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if crl.Entries != n {
					b.Fatalf("%d entries, want %d", crl.Entries, n)
				}
				b.ReportMetric(float64(len(crl.DER))/(1<<20), "MiB")
			}
		})
	}
}
