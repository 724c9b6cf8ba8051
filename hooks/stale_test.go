package hooks_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// TestStaleCoreDeniesEveryDialect replays every allow_* request of the
// corpus against a core bounded by MaxStaleness: allowed while its views are
// fresh, the dialect's explicit deny once they are older than the bound, and
// allowed again after a sync.
func TestStaleCoreDeniesEveryDialect(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*/allow_*.http")
	if err != nil || len(files) < 20 {
		t.Fatalf("corpus: %d allow cases, %v", len(files), err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	core := authz.New(authz.Config{Now: now, MaxStaleness: 30 * time.Second})
	core.SetPolicy(p, 1)
	exp := now().Add(time.Hour)
	for _, d := range []authz.Device{
		{ID: "dev1", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"}, CertSerial: "a1", CertNotAfter: exp},
		{ID: "dev2", Fleet: "plant", Active: true, Status: "active", Roles: []string{"telemetry"}, CertSerial: "a2", CertNotAfter: exp},
		{ID: "ctl", Fleet: "plant", Active: true, Status: "active", Roles: []string{"command"}, CertSerial: "a3", CertNotAfter: exp},
	} {
		core.UpsertDevice(d)
	}
	synced := func() { core.DevicesSynced(now()); core.PolicySynced(now()) }
	synced()

	handlers := map[string]*hooks.Handler{}
	answer := func(t *testing.T, f string) bool {
		dialect := filepath.Base(filepath.Dir(f))
		h := handlers[dialect]
		if h == nil {
			mode := hooks.MosquittoStatus
			if m, ok := strings.CutPrefix(dialect, "mosquitto-"); ok {
				mode = hooks.MosquittoMode(m)
			}
			if h, err = hooks.New(hooks.Config{Authorizer: core, Secret: secret, MosquittoMode: mode, RabbitCertLogin: true}); err != nil {
				t.Fatal(err)
			}
			handlers[dialect] = h
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("status %d: brokers read 5xx as an error, not a deny", rec.Code)
		}
		return allowedBy(dialect, rec.Code, rec.Body.String())
	}
	for _, phase := range []struct {
		name  string
		step  func()
		allow bool
	}{
		{"fresh", func() {}, true},
		{"stale", func() { clock.Add(int64(31 * time.Second)) }, false},
		{"synced again", synced, true},
	} {
		phase.step()
		for _, f := range files {
			t.Run(phase.name+"/"+filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
				if got := answer(t, f); got != phase.allow {
					t.Errorf("allowed = %v, want %v", got, phase.allow)
				}
			})
		}
	}
}
