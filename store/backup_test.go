package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestSnapshot: an SQLite snapshot taken while writers keep committing
// opens as a database of its own holding a prefix of their commits, with
// mode 0600; PostgreSQL says to use pg_dump.
func TestSnapshot(t *testing.T) {
	onEveryBackend(t, []backendCase{{"snapshot", func(t *testing.T, backend string) {
		ctx := context.Background()
		st, err := store.New(ctx, store.Config{DSN: testdb.DSN(t, backend)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		target := filepath.Join(t.TempDir(), "snap.db")
		if backend == "postgres" {
			if !st.Postgres() || !fault.Is(st.Snapshot(ctx, target), fault.InvalidArgument) {
				t.Fatal("a PostgreSQL snapshot did not refuse with invalid_argument")
			}
			return
		}
		var committed atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := st.CreateFleet(ctx, store.Fleet{Name: fmt.Sprintf("w%d-%d", w, i)}, nil); err != nil {
						t.Error(err)
						return
					}
					committed.Add(1)
				}
			}()
		}
		for committed.Load() < 20 {
			runtime.Gosched()
		}
		before := committed.Load()
		err = st.Snapshot(ctx, target)
		after := committed.Load()
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot file: %v %v", fi, err)
		}
		if err := st.Snapshot(ctx, target); !fault.Is(err, fault.AlreadyExists) {
			t.Fatalf("snapshot over an existing file: %v", err)
		}
		snap, err := store.New(ctx, store.Config{DSN: target})
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		fleets, err := snap.ListFleets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := int64(len(fleets)); n < before || n > after {
			t.Fatalf("snapshot holds %d fleets; %d were committed before it began, %d when it ended", n, before, after)
		}
	}}})
}
