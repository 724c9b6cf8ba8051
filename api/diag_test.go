package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api"
)

type fakePinger struct{ err error }

func (p fakePinger) Ping(context.Context) error { return p.err }

type fakeStaleness struct {
	stale  bool
	synced time.Time
}

func (f fakeStaleness) Stale() (bool, time.Time) { return f.stale, f.synced }

// TestReadyz: /readyz is 503 when the database does not answer or when the
// decision core denies everything as stale, and says which.
func TestReadyz(t *testing.T) {
	down := errors.New("down")
	for _, tc := range []struct {
		name string
		db   error
		core api.Staleness
		code int
		body []string
	}{
		{"ready", nil, fakeStaleness{synced: time.Now()}, 200, []string{"ok"}},
		{"ready without a core", nil, nil, 200, []string{"ok"}},
		{"database down, still fresh", down, fakeStaleness{synced: time.Now()}, 503, []string{"database unavailable"}},
		{"stale", nil, fakeStaleness{stale: true, synced: time.Now().Add(-45 * time.Second)}, 503, []string{"decision state stale", "45s ago"}},
		{"never synced", nil, fakeStaleness{stale: true}, 503, []string{"never synced"}},
		{"both", down, fakeStaleness{stale: true, synced: time.Now().Add(-time.Minute)}, 503, []string{"database unavailable", "decision state stale"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			api.Diagnostics(fakePinger{tc.db}, tc.core).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.code {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			for _, want := range tc.body {
				if !strings.Contains(rec.Body.String(), want) {
					t.Errorf("body %q lacks %q", rec.Body, want)
				}
			}
		})
	}
}

type fakeDegraded []string

func (f fakeDegraded) Degraded() []string { return f }

// TestReadyzDegraded: a failing kick target is reported by /readyz but
// keeps it 200 (the replica still answers brokers); a real outage is still
// 503 and lists both.
func TestReadyzDegraded(t *testing.T) {
	d := fakeDegraded{"kick target rabbitmq: GET http://r/api/whoami: 401 Unauthorized"}
	rec := httptest.NewRecorder()
	api.Diagnostics(fakePinger{}, nil, d, fakeDegraded(nil)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != 200 || rec.Body.String() != "ok (degraded)\ndegraded: "+d[0]+"\n" {
		t.Errorf("degraded: %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	api.Diagnostics(fakePinger{}, nil, fakeDegraded(nil)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("healthy: %d %q", rec.Code, rec.Body)
	}
}
