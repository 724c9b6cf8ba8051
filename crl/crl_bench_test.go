package crl_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// BenchmarkPublish measures what a revocation waits for with N revoked
// certificates on SQLite: generate (store query, encode, sign, store),
// verify, write the PEM file.
//
//	go test ./crl -run '^$' -bench Publish -benchtime 1x -benchmem
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			if n > 100_000 && testing.Short() {
				b.Skip("-short: skipping the million-entry list")
			}
			dsn := testdb.SQLite(b)
			caDir := filepath.Join(b.TempDir(), "ca")
			if err := ca.Init(ca.InitConfig{Dir: caDir, Passphrase: []byte("a-test-passphrase-123")}); err != nil {
				b.Fatal(err)
			}
			r := newBenchReplica(b, caDir, dsn)
			certs := testdb.RevokedCerts(n, time.Now())
			testdb.SeedCertificates(b, dsn, certs)
			certs = nil
			b.ResetTimer()
			for range b.N {
				if err := r.Publish(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if st := r.Status(); st.Entries != n {
				b.Fatalf("%d entries, want %d", st.Entries, n)
			}
		})
	}
}

func newBenchReplica(b *testing.B, caDir, dsn string) *crl.Publisher {
	b.Helper()
	st := openStore(b, dsn)
	c, err := ca.New(ca.Config{Dir: caDir, Passphrase: []byte("a-test-passphrase-123"), Store: st, CRLStore: st})
	if err != nil {
		b.Fatal(err)
	}
	p, err := crl.New(crl.Config{Generator: c, Numbers: st, Issuer: c.Intermediate(), File: filepath.Join(b.TempDir(), "crl.pem")})
	if err != nil {
		b.Fatal(err)
	}
	return p
}
