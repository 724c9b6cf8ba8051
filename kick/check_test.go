package kick_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/kick"
)

// fakeRabbit answers /api/whoami and /api/users like RabbitMQ 3.10's
// management API, for the password pass.
func fakeRabbit(t *testing.T, pass, tags string, users ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops@gatehouse" || p != pass {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"not_authorised","reason":"Login failed"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/whoami":
			_, _ = w.Write([]byte(`{"name":"ops@gatehouse","tags":` + tags + `}`))
		case "/api/users":
			var b strings.Builder
			b.WriteString(`[{"name":"ops@gatehouse"}`)
			for _, u := range users {
				b.WriteString(`,{"name":"` + u + `"}`)
			}
			b.WriteString("]")
			_, _ = w.Write([]byte(b.String()))
		case "/api/connections/username/sensor-1":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRabbitMQCheck(t *testing.T) {
	cases := []struct {
		name      string
		pass      string
		tags      string
		users     []string
		want      string // substring of the error; "" = ok
		collision []string
	}{
		{name: "ok", pass: rabbitPass, tags: `["administrator"]`, users: []string{"monitor@ops", "bad name!"}},
		{name: "old string tags", pass: rabbitPass, tags: `"management,administrator"`},
		{name: "wrong password", pass: "wrong", tags: `["administrator"]`, want: "401 Unauthorized"},
		{name: "not administrator", pass: rabbitPass, tags: `["management"]`, want: "lacks the administrator tag"},
		{name: "device-shaped user", pass: rabbitPass, tags: `["administrator"]`, users: []string{"admin", "x@y", "sensor_legacy"},
			want: "could be device ids", collision: []string{"admin", "sensor_legacy"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeRabbit(t, rabbitPass, tc.tags, tc.users...)
			r, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: srv.URL, User: "ops@gatehouse", Password: tc.pass})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Check(context.Background())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), rabbitPass) {
				t.Errorf("the password leaked into %v", err)
			}
			var ce *kick.CollisionError
			if got := errors.As(err, &ce); got != (tc.collision != nil) {
				t.Fatalf("collision error %v, want %v", got, tc.collision != nil)
			}
			if ce != nil && strings.Join(ce.Users, ",") != strings.Join(tc.collision, ",") {
				t.Errorf("colliding users %q, want %q", ce.Users, tc.collision)
			}
		})
	}
	// 401 explains the most likely cause: the login went to the http backend.
	srv := fakeRabbit(t, rabbitPass, `["administrator"]`)
	r, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: srv.URL, User: "ops@gatehouse", Password: "wrong"})
	if err := r.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "auth_backends") {
		t.Errorf("401 error does not mention auth_backends: %v", err)
	}
}

func TestEMQXCheck(t *testing.T) {
	for _, tc := range []struct {
		status int
		ok     bool
	}{{200, true}, {401, false}, {404, false}} {
		srv, got := fakeAPI(t, tc.status, `{"data":[]}`)
		e, err := kick.NewEMQX(kick.EMQXConfig{URL: srv.URL + "/api/v5", APIKey: "k", APISecret: emqxSecret})
		if err != nil {
			t.Fatal(err)
		}
		err = e.Check(context.Background())
		if (err == nil) != tc.ok {
			t.Errorf("status %d: Check = %v", tc.status, err)
		}
		if s := (*got)[0]; s.method != "GET" || s.path != "/api/v5/clients" || s.pass != emqxSecret {
			t.Errorf("status %d: request %+v", tc.status, s)
		}
	}
}

// CheckTargets records each target's state (webhooks cannot be checked),
// returns only a collision, and a failed delivery re-checks its target, so
// a password changed at the broker shows as the target's state.
func TestCheckTargets(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			st := openStore(t, backend)
			clk := testclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			good := fakeRabbit(t, rabbitPass, `["administrator"]`)
			rmq, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{Name: "rmq", URL: good.URL, User: "ops@gatehouse", Password: rabbitPass})
			bad, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{Name: "rmq-bad", URL: good.URL, User: "ops@gatehouse", Password: "wrong"})
			hook, _ := kick.NewWebhook(kick.WebhookConfig{URL: good.URL + "/hook", Secret: hookSecret})
			s := newService(t, st, clk, rmq, bad, hook)
			for _, th := range s.Targets() {
				if th.Status != kick.TargetUnchecked {
					t.Fatalf("before any check: %+v", th)
				}
			}
			if err := s.CheckTargets(ctx); err != nil {
				t.Fatalf("CheckTargets returned %v for a wrong password; only collisions stop the start", err)
			}
			got := s.Targets()
			if got[0].Status != kick.TargetOK || got[1].Status != kick.TargetError || !strings.Contains(got[1].Error, "401") ||
				got[2].Status != kick.TargetUnchecked || got[1].CheckedAt.IsZero() {
				t.Fatalf("targets after the check: %+v", got)
			}
			if d := s.Degraded(); len(d) != 1 || !strings.HasPrefix(d[0], "kick target rmq-bad: ") {
				t.Errorf("Degraded = %q", d)
			}

			// A failed delivery to the good target re-checks it (its
			// password is now refused: another service with the same
			// broker name and a wrong password stands in for a password
			// changed at the broker).
			clk.Add(time.Minute)
			changed, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{Name: "rmq", URL: good.URL, User: "ops@gatehouse", Password: "changed"})
			s2 := newService(t, st, clk, changed)
			if err := s2.Kick(ctx, "sensor-1", "device.revoke"); err != nil {
				t.Fatal(err)
			}
			s2.DeliverDue(ctx)
			if th := s2.Targets()[0]; th.Status != kick.TargetError || !strings.Contains(th.Error, "401") {
				t.Errorf("after a failed delivery: %+v", th)
			}

			// A collision is returned, and a later successful delivery
			// does not clear it.
			clash := fakeRabbit(t, rabbitPass, `["administrator"]`, "sensor-1")
			rc, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: clash.URL, User: "ops@gatehouse", Password: rabbitPass})
			s3 := newService(t, st, clk, rc)
			var ce *kick.CollisionError
			if err := s3.CheckTargets(ctx); !errors.As(err, &ce) || ce.Users[0] != "sensor-1" {
				t.Fatalf("CheckTargets = %v, want a collision on sensor-1", err)
			}
			clk.Add(time.Hour)
			if err := s3.Kick(ctx, "sensor-1", "device.revoke"); err != nil {
				t.Fatal(err)
			}
			s3.DeliverDue(ctx)
			if th := s3.Targets()[0]; th.Status != kick.TargetError || !strings.Contains(th.Error, "could be device ids") {
				t.Errorf("the collision was cleared by a delivery: %+v", th)
			}
		})
	}
}

// TestRunChecksPeriodically: a password changed at the broker shows as the
// target's error within CheckEvery, with no kick to deliver.
func TestRunChecksPeriodically(t *testing.T) {
	var pass atomic.Value
	pass.Store(rabbitPass)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, p, _ := r.BasicAuth(); p != pass.Load().(string) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/whoami":
			_, _ = w.Write([]byte(`{"name":"ops@gatehouse","tags":["administrator"]}`))
		case "/api/users":
			_, _ = w.Write([]byte(`[{"name":"ops@gatehouse"}]`))
		}
	}))
	defer srv.Close()
	rmq, _ := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: srv.URL, User: "ops@gatehouse", Password: rabbitPass})
	s, err := kick.New(kick.Config{Store: openDSN(t, testdb.SQLite(t)), Brokers: []kick.Broker{rmq},
		Poll: 10 * time.Millisecond, CheckEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	status := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for s.Targets()[0].Status != want {
			if time.Now().After(deadline) {
				t.Fatalf("target %+v, want %s", s.Targets()[0], want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	status(kick.TargetOK)
	pass.Store("changed at the broker")
	status(kick.TargetError)
}
