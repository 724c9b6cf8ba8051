package teststore_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/teststore"
	"github.com/gatehouse-iot/gatehouse/store"
)

var (
	errA = errors.New("injected A")
	errB = errors.New("injected B")
)

// TestEveryMethodChecks calls each wrapped method with FailOn set for it:
// every one returns the injected error (so its name string matches the
// method), before touching the store (zero arguments would make the real
// store fail otherwise), and counts only itself.
func TestEveryMethodChecks(t *testing.T) {
	methods := teststore.Methods()
	if len(methods) < 27 {
		t.Fatalf("only %d wrapped methods: %v", len(methods), methods)
	}
	for _, m := range methods {
		t.Run(m, func(t *testing.T) {
			db := teststore.New(nil) // never reached
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%s reached the store (%v): its check names another method", m, r)
				}
			}()
			db.FailOn(m, errA)
			fn := reflect.ValueOf(db).MethodByName(m)
			args := make([]reflect.Value, fn.Type().NumIn())
			for i := range args {
				args[i] = reflect.Zero(fn.Type().In(i))
			}
			out := fn.Call(args)
			if err, _ := out[len(out)-1].Interface().(error); !errors.Is(err, errA) {
				t.Fatalf("%s returned %v, want the injected error", m, err)
			}
			for _, other := range methods {
				want := 0
				if other == m {
					want = 1
				}
				if got := db.Calls(other); got != want {
					t.Errorf("Calls(%s) = %d after one call of %s", other, got, m)
				}
			}
		})
	}
}

// TestInjections scripts calls against a real store on each backend: which
// calls fail, and that the others reach the database.
func TestInjections(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			db := teststore.Open(t, backend)
			for _, f := range []string{"f", "g"} {
				if _, err := db.Real().CreateFleet(ctx, store.Fleet{Name: f}, nil); err != nil {
					t.Fatal(err)
				}
			}
			fleet := func() error { _, err := db.GetFleet(ctx, "f"); return err }
			other := func() error { _, err := db.GetFleet(ctx, "g"); return err } // same method
			profile := func() error {
				_, err := db.GetProfile(ctx, "none")
				if fault.Is(err, fault.NotFound) {
					return nil // reached the database
				}
				return err
			}
			steps := []struct {
				name   string
				inject func()
				call   func() error
				want   error
			}{
				{"nothing injected", nil, fleet, nil},
				{"SetNextError fails the next call of any method", func() { db.SetNextError(errA) }, profile, errA},
				{"… once", nil, fleet, nil},
				{"SetNextError replaces the queue", func() { db.AppendNextError(errA); db.SetNextError(errB) }, fleet, errB},
				{"… so nothing is left", nil, fleet, nil},
				{"AppendNextError: a nil lets its call through", func() { db.AppendNextError(nil); db.AppendNextError(errA) }, fleet, nil},
				{"… and the next entry fails the next call", nil, profile, errA},
				{"FailNth 2: first call passes", func() { db.FailNth("GetFleet", 2, errB) }, fleet, nil},
				{"… other methods do not count", nil, profile, nil},
				{"… second call fails, whatever its arguments", nil, other, errB},
				{"… third passes", nil, fleet, nil},
				{"FailOn fails every call", func() { db.FailOn("GetFleet", errA) }, fleet, errA},
				{"… again", nil, other, errA},
				{"… not other methods", nil, profile, nil},
				{"FailOn nil heals", func() { db.FailOn("GetFleet", nil) }, fleet, nil},
				{"SetNextError comes before FailOn", func() { db.FailOn("GetFleet", errA); db.SetNextError(errB) }, fleet, errB},
				{"Reset drops every injection", func() { db.FailNth("GetProfile", 1, errA); db.SetNextError(errB); db.Reset() }, fleet, nil},
				{"… FailNth too", nil, profile, nil},
			}
			for i, s := range steps {
				if s.inject != nil {
					s.inject()
				}
				if err := s.call(); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
					t.Fatalf("step %d (%s): %v, want %v", i, s.name, err, s.want)
				}
			}
			if got := db.Calls("GetFleet"); got != 13 {
				t.Errorf("Calls(GetFleet) = %d, want 13 (failed calls count)", got)
			}

			// A failed write does not reach the database.
			db.FailOn("EnqueueKicks", errA)
			if err := db.EnqueueKicks(ctx, "d1", "device.revoke", []string{"b"}, time.Now()); !errors.Is(err, errA) {
				t.Fatalf("EnqueueKicks: %v", err)
			}
			if ks, err := db.Real().DeviceKicks(ctx, "d1"); err != nil || len(ks) != 0 {
				t.Fatalf("a refused EnqueueKicks wrote %+v (%v)", ks, err)
			}
			db.Reset()
			if err := db.EnqueueKicks(ctx, "d1", "device.revoke", []string{"b"}, time.Now()); err != nil {
				t.Fatal(err)
			}
			if ks, err := db.Real().DeviceKicks(ctx, "d1"); err != nil || len(ks) != 1 {
				t.Fatalf("EnqueueKicks after Reset wrote %+v (%v)", ks, err)
			}
		})
	}
}

// TestFailNthConcurrent: among concurrent calls exactly the n-th fails.
func TestFailNthConcurrent(t *testing.T) {
	ctx := context.Background()
	db := teststore.Open(t, "sqlite")
	if _, err := db.Real().CreateFleet(ctx, store.Fleet{Name: "f"}, nil); err != nil {
		t.Fatal(err)
	}
	db.FailNth("GetFleet", 25, errA)
	var failed, other atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := db.GetFleet(ctx, "f")
			switch {
			case errors.Is(err, errA):
				failed.Add(1)
			case err != nil:
				other.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 1 || other.Load() != 0 || db.Calls("GetFleet") != 50 {
		t.Fatalf("%d injected and %d other failures in %d calls, want exactly one injected", failed.Load(), other.Load(), db.Calls("GetFleet"))
	}
}

// TestNamesAreChecked: a misspelt or control method name panics instead of
// arming an injection that never fires.
func TestNamesAreChecked(t *testing.T) {
	db := teststore.New(nil)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"typo", func() { db.FailOn("RecordRenewl", errA) }},
		{"unwrapped store method", func() { db.FailNth("CreateFleet", 1, errA) }},
		{"control method", func() { db.FailOn("Reset", errA) }},
		{"Calls of a typo", func() { db.Calls("GetFleets") }},
		{"n below 1", func() { db.FailNth("GetFleet", 0, errA) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			c.f()
		})
	}
}
