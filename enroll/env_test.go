package enroll_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/store"
)

var caPass = []byte("correct horse battery staple")

// env is an enrollment service over a real SQLite file and a real CA, with
// fleet "default" and inventory.DefaultProfile seeded.
type env struct {
	st  *store.Store
	ca  *ca.CA
	svc *enroll.Service
}

// newEnv builds an env in dir. now is the service's clock (nil: time.Now);
// the CA keeps real time so that issued certificates are valid now.
func newEnv(tb testing.TB, dir string, now func() time.Time) *env {
	tb.Helper()
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{DSN: filepath.Join(dir, "gatehouse.db")})
	if err != nil {
		tb.Fatalf("store.New: %v", err)
	}
	if now != nil {
		st.SetClock(now)
	}
	caDir := filepath.Join(dir, "ca")
	if err := ca.Init(ca.InitConfig{Dir: caDir, Passphrase: caPass}); err != nil {
		tb.Fatal(err)
	}
	theCA, err := ca.New(ca.Config{Dir: caDir, Passphrase: caPass, Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	rec := audit.New(st, nil)
	svc, err := enroll.New(enroll.Config{Catalog: st, Tokens: st, Records: st, Claims: st, Audit: rec, Issuer: theCA, Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.CreateFleet(ctx, store.Fleet{Name: "default"}, nil); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.CreateProfile(ctx, inventory.DefaultProfile(), nil); err != nil {
		tb.Fatal(err)
	}
	return &env{st: st, ca: theCA, svc: svc}
}
