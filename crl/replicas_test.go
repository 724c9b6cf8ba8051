package crl_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// replica is one Gatehouse replica's CRL stack on a shared database.
type replica struct {
	st  *store.Store
	ca  *ca.CA
	pub *crl.Publisher
	crl string
}

func openStore(t testing.TB, dsn string) *store.Store {
	t.Helper()
	st, err := store.New(context.Background(), store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newReplica(t *testing.T, caDir, dsn string) *replica {
	t.Helper()
	st := openStore(t, dsn)
	c, err := ca.New(ca.Config{Dir: caDir, Passphrase: []byte("a-test-passphrase-123"), Store: st, CRLStore: st,
		CRLURL: "http://127.0.0.1:8080/crl"})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "crl.pem")
	p, err := crl.New(crl.Config{Generator: c, Numbers: st, Issuer: c.Intermediate(), File: file,
		PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{st: st, ca: c, pub: p, crl: file}
}

// TestReplicasShareOneRisingNumber runs two replicas on one database: their
// concurrent publications all succeed with distinct numbers, the stored
// number is the highest, and each replica installs the other's lists.
func TestReplicasShareOneRisingNumber(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn := testdb.DSN(t, backend)
			caDir := filepath.Join(t.TempDir(), "ca")
			if err := ca.Init(ca.InitConfig{Dir: caDir, Passphrase: []byte("a-test-passphrase-123")}); err != nil {
				t.Fatal(err)
			}
			a, b := newReplica(t, caDir, dsn), newReplica(t, caDir, dsn)
			const rounds = 6
			var (
				mu      sync.Mutex
				numbers = map[int64]bool{}
				wg      sync.WaitGroup
			)
			for _, r := range []*replica{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range rounds {
						c, err := r.ca.GenerateCRL(ctx)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						if numbers[c.Number] {
							t.Errorf("number %d generated twice", c.Number)
						}
						numbers[c.Number] = true
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			stored, err := a.st.CRLNumber(ctx)
			if err != nil || stored != 2*rounds || len(numbers) != 2*rounds {
				t.Fatalf("stored number %d (%v), %d distinct numbers; want %d", stored, err, len(numbers), 2*rounds)
			}

			// Replica b runs its upkeep loop; a publishes; b's file follows.
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { _ = b.pub.Run(rctx); close(done) }()
			defer func() { cancel(); <-done }()
			if err := a.pub.Publish(ctx); err != nil {
				t.Fatal(err)
			}
			want := a.pub.Status().Number
			if want != 2*rounds+1 {
				t.Fatalf("a published %d, want %d", want, 2*rounds+1)
			}
			// The list is served (Status) a moment before its file is
			// written: wait for the file.
			deadline := time.Now().Add(5 * time.Second)
			for st := b.pub.Status(); st.Number < want || st.FileWrittenAt.IsZero(); st = b.pub.Status() {
				if time.Now().After(deadline) {
					t.Fatalf("replica b still at CRL %d (file written %v), want %d", st.Number, st.FileWrittenAt, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			eventuallyFile(t, b.crl, want)
		})
	}
}

// eventuallyFile waits until path holds list want.
func eventuallyFile(t *testing.T, path string, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			if n := fileNumber(t, path); n == want {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("file holds %d, want %d", n, want)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("file %s: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
