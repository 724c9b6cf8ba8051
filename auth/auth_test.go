package auth_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// testParams keep service tests fast; DefaultParams are measured by
// BenchmarkHashPassword and checked by TestHashFormat.
var testParams = auth.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type env struct {
	svc   *auth.Service
	st    *store.Store
	clock *testclock.Clock
}

func newEnv(t *testing.T, backend string) env {
	t.Helper()
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{DSN: testdb.DSN(t, backend)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clk := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	st.SetClock(clk.Now)
	svc, err := auth.New(auth.Config{Users: st, Sessions: st, Params: testParams, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return env{svc: svc, st: st, clock: clk}
}

const goodPassword = "correct horse battery"

func TestHashFormat(t *testing.T) {
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=1,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	h1, err := auth.HashPassword(goodPassword, auth.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := auth.HashPassword(goodPassword, auth.DefaultParams)
	if !phc.MatchString(h1) || !phc.MatchString(h2) {
		t.Fatalf("not an argon2id PHC string: %s", h1)
	}
	if h1 == h2 || strings.Split(h1, "$")[4] == strings.Split(h2, "$")[4] {
		t.Fatalf("two hashes of one password share a salt: %s %s", h1, h2)
	}
	for _, tc := range []struct {
		pw   string
		hash string
		ok   bool
	}{
		{goodPassword, h1, true},
		{goodPassword, h2, true},
		{goodPassword + "x", h1, false},
		{"", h1, false},
	} {
		ok, err := auth.VerifyPassword(tc.pw, tc.hash)
		if err != nil || ok != tc.ok {
			t.Errorf("verify(%q) = %v, %v; want %v", tc.pw, ok, err, tc.ok)
		}
	}
	// A hash made with other (legacy) parameters still verifies: they are
	// read from the string.
	legacy, _ := auth.HashPassword(goodPassword, auth.Params{Memory: 4096, Time: 3, Threads: 1, SaltLen: 8, KeyLen: 16})
	if ok, err := auth.VerifyPassword(goodPassword, legacy); !ok || err != nil {
		t.Fatalf("legacy params: %v %v", ok, err)
	}
}

func TestParsePHC(t *testing.T) {
	salt, key := "c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	good := "$argon2id$v=19$m=65536,t=1,p=2$" + salt + "$" + key
	if ph, err := auth.ParsePHC(good); err != nil || ph.Params.Memory != 65536 || ph.Params.Time != 1 || ph.Params.Threads != 2 || len(ph.Salt) != 16 {
		t.Fatalf("good: %+v %v", ph, err)
	}
	for name, in := range map[string]string{
		"empty":          "",
		"argon2i":        "$argon2i$v=19$m=65536,t=1,p=2$" + salt + "$" + key,
		"bcrypt":         "$2a$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzabcde",
		"old version":    "$argon2id$v=16$m=65536,t=1,p=2$" + salt + "$" + key,
		"no version":     "$argon2id$m=65536,t=1,p=2$" + salt + "$" + key,
		"huge memory":    "$argon2id$v=19$m=4294967295,t=1,p=2$" + salt + "$" + key,
		"zero time":      "$argon2id$v=19$m=65536,t=0,p=2$" + salt + "$" + key,
		"many passes":    "$argon2id$v=19$m=65536,t=1000,p=2$" + salt + "$" + key,
		"zero threads":   "$argon2id$v=19$m=65536,t=1,p=0$" + salt + "$" + key,
		"dup param":      "$argon2id$v=19$m=65536,m=1,p=2$" + salt + "$" + key,
		"missing param":  "$argon2id$v=19$m=65536,t=1$" + salt + "$" + key,
		"unknown param":  "$argon2id$v=19$m=65536,t=1,p=2,x=1$" + salt + "$" + key,
		"signed":         "$argon2id$v=19$m=+65536,t=1,p=2$" + salt + "$" + key,
		"leading zero":   "$argon2id$v=19$m=065536,t=1,p=2$" + salt + "$" + key,
		"short salt":     "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$" + key,
		"padded salt":    "$argon2id$v=19$m=65536,t=1,p=2$" + salt + "==$" + key,
		"bad base64":     "$argon2id$v=19$m=65536,t=1,p=2$" + salt + "$" + key[:40] + "!!!",
		"short key":      "$argon2id$v=19$m=65536,t=1,p=2$" + salt + "$a2V5",
		"trailing field": good + "$x",
		"no leading $":   good[1:],
	} {
		if _, err := auth.ParsePHC(in); fault.CodeOf(err) != fault.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParsePHC(f *testing.F) {
	h, _ := auth.HashPassword("x", testParams)
	for _, s := range []string{h, "", "$argon2id$v=19$m=1,t=1,p=1$$", "$argon2id$v=19$m=65536,t=1,p=2$AAAA$AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ph, err := auth.ParsePHC(s)
		if err != nil {
			if fault.CodeOf(err) != fault.InvalidArgument {
				t.Fatalf("error without invalid_argument: %v", err)
			}
			return
		}
		// Whatever parses is within bounds, so verifying it is cheap enough.
		if ph.Params.Memory > 1<<20 || ph.Params.Time > 16 || ph.Params.Threads == 0 || len(ph.Salt) < 8 || len(ph.Key) < 16 {
			t.Fatalf("out-of-bounds params accepted: %+v", ph.Params)
		}
	})
}

func TestLogin(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			ctx := context.Background()
			if _, err := e.svc.CreateUser(ctx, "test", "alice", goodPassword, auth.RoleOperator); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.CreateUser(ctx, "test", "dora", goodPassword, auth.RoleViewer); err != nil {
				t.Fatal(err)
			}
			yes := true
			if _, err := e.svc.UpdateUser(ctx, "test", "dora", auth.UserUpdate{Disabled: &yes}); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name, user, pass string
				want             fault.Code
			}{
				{"good", "alice", goodPassword, ""},
				{"username case and spaces", " Alice ", goodPassword, ""},
				{"wrong password", "alice", goodPassword + "!", fault.Unauthenticated},
				{"unknown user", "nobody", goodPassword, fault.Unauthenticated},
				{"invalid username", "../etc", goodPassword, fault.Unauthenticated},
				{"disabled user", "dora", goodPassword, fault.Unauthenticated},
				{"empty password", "alice", "", fault.Unauthenticated},
			} {
				sess, err := e.svc.Login(ctx, auth.Credentials{Username: tc.user, Password: tc.pass, ClientIP: "192.0.2." + tc.name[:1]})
				if fault.CodeOf(err) != tc.want {
					t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
					continue
				}
				if tc.want != "" {
					// One message for every failure: no username oracle.
					if fault.MessageOf(err) != "wrong username or password" {
						t.Errorf("%s: message %q", tc.name, fault.MessageOf(err))
					}
					continue
				}
				if sess.User.Username != "alice" || sess.User.Role != auth.RoleOperator || len(sess.Secret) != 43 ||
					sess.CSRFToken == "" || sess.CSRFToken == sess.Secret || strings.Contains(sess.ID, sess.Secret) {
					t.Errorf("%s: session %+v", tc.name, sess)
				}
				got, err := e.svc.Authenticate(ctx, sess.Secret)
				if err != nil || got.User.Username != "alice" || got.CSRFToken != sess.CSRFToken || got.Secret != "" {
					t.Errorf("%s: authenticate %+v %v", tc.name, got, err)
				}
			}
			// The audit trail names the user.
			evs, err := e.st.ListAudit(ctx, store.AuditFilter{Actor: "user:alice"})
			if err != nil || len(evs) == 0 || evs[0].Action != "session.login" {
				t.Fatalf("audit: %+v %v", evs, err)
			}
		})
	}
}

func TestLoginTiming(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	svc, err := auth.New(auth.Config{Users: e.st, Sessions: e.st, Now: e.clock.Now, FreeFailures: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(ctx, "test", "alice", goodPassword, auth.RoleViewer); err != nil {
		t.Fatal(err)
	}
	measure := func(user string) time.Duration {
		best := time.Hour
		for range 3 {
			start := time.Now()
			_, _ = svc.Login(ctx, auth.Credentials{Username: user, Password: "wrong password!"})
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := measure("alice"), measure("nobody")
	// Both run one argon2id with the default cost; an early return for an
	// unknown user would take microseconds.
	if unknown < known/2 || known < unknown/2 {
		t.Fatalf("unknown user %v vs wrong password %v", unknown, known)
	}
	t.Logf("wrong password %v, unknown user %v", known, unknown)
}

func TestThrottle(t *testing.T) {
	e := newEnv(t, "sqlite")
	ctx := context.Background()
	if _, err := e.svc.CreateUser(ctx, "test", "alice", goodPassword, auth.RoleViewer); err != nil {
		t.Fatal(err)
	}
	login := func(user, pass, ip string) error {
		_, err := e.svc.Login(ctx, auth.Credentials{Username: user, Password: pass, ClientIP: ip})
		return err
	}
	for i := range 5 {
		if err := login("alice", "wrong password!!", "192.0.2.1"); fault.CodeOf(err) != fault.Unauthenticated {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	// The sixth failure starts a backoff; even the right password waits.
	_ = login("alice", "wrong password!!", "192.0.2.1")
	err := login("alice", goodPassword, "192.0.2.9")
	var te *auth.ThrottledError
	if fault.CodeOf(err) != auth.LoginThrottled || !errors.As(err, &te) || te.RetryAfter <= 0 || te.RetryAfter > time.Second {
		t.Fatalf("throttled login: %v", err)
	}
	// Another user is not affected.
	if err := login("bob", "whatever-password", "192.0.2.9"); fault.CodeOf(err) != fault.Unauthenticated {
		t.Fatalf("other user: %v", err)
	}
	e.clock.Add(1100 * time.Millisecond)
	if err := login("alice", goodPassword, "192.0.2.9"); err != nil {
		t.Fatalf("after the backoff: %v", err)
	}
	// Success cleared the counter.
	if err := login("alice", "wrong password!!", "192.0.2.9"); fault.CodeOf(err) != fault.Unauthenticated {
		t.Fatalf("after success: %v", err)
	}

	// Per address: many usernames from one address.
	for i := range 20 {
		_ = login("user"+string(rune('a'+i)), "wrong password!!", "198.51.100.7")
	}
	_ = login("zed", "wrong password!!", "198.51.100.7")
	if err := login("alice", goodPassword, "198.51.100.7"); fault.CodeOf(err) != auth.LoginThrottled {
		t.Fatalf("address throttle: %v", err)
	}
}

func TestSessionExpiry(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			ctx := context.Background()
			if _, err := e.svc.CreateUser(ctx, "test", "alice", goodPassword, auth.RoleViewer); err != nil {
				t.Fatal(err)
			}
			login := func() auth.Session {
				t.Helper()
				s, err := e.svc.Login(ctx, auth.Credentials{Username: "alice", Password: goodPassword})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			alive := func(s auth.Session) bool {
				t.Helper()
				_, err := e.svc.Authenticate(ctx, s.Secret)
				if err != nil && !fault.Is(err, fault.Unauthenticated) {
					t.Fatal(err)
				}
				return err == nil
			}

			// Idle: 59 minutes between requests keeps it alive for hours...
			s := login()
			if !s.ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) {
				t.Fatalf("expires_at %v, want idle deadline", s.ExpiresAt)
			}
			for i := range 5 {
				e.clock.Add(59 * time.Minute)
				if !alive(s) {
					t.Fatalf("idle %d: session ended early", i)
				}
			}
			// ...an hour without one ends it.
			e.clock.Add(time.Hour)
			if alive(s) {
				t.Fatal("session survived an hour idle")
			}

			// Absolute: 12 hours after login even an active session ends.
			s = login()
			start := e.clock.Now()
			var last auth.Session
			for {
				e.clock.Add(50 * time.Minute)
				got, err := e.svc.Authenticate(ctx, s.Secret)
				if err != nil {
					break
				}
				last = got
			}
			if ended := e.clock.Now().Sub(start); ended <= 12*time.Hour || ended > 12*time.Hour+50*time.Minute {
				t.Fatalf("active session ended after %v", ended)
			}
			if !last.ExpiresAt.Equal(start.Add(12 * time.Hour)) {
				t.Fatalf("near the end expires_at is %v, want the absolute deadline %v", last.ExpiresAt, start.Add(12*time.Hour))
			}

			// Logout ends the session at once.
			s = login()
			if err := e.svc.Logout(ctx, s); err != nil {
				t.Fatal(err)
			}
			if alive(s) {
				t.Fatal("session alive after logout")
			}
			// Garbage secrets are simply unauthenticated.
			for _, bad := range []string{"", "x", strings.Repeat("A", 43), strings.Repeat("!", 43), strings.Repeat("A", 4000)} {
				if _, err := e.svc.Authenticate(ctx, bad); fault.CodeOf(err) != fault.Unauthenticated {
					t.Fatalf("secret %q: %v", bad, err)
				}
			}
		})
	}
}
