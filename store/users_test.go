package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

func TestAdminUsersAndSessions(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, testdb.DSN(t, backend), nil)

			alice, err := s.CreateAdminUser(ctx, store.AdminUser{Username: "alice", PasswordHash: "h1", Role: "admin"}, nil)
			if err != nil || alice.ID == "" || alice.Disabled() || alice.LastLoginAt != nil {
				t.Fatalf("create: %+v %v", alice, err)
			}
			if _, err := s.CreateAdminUser(ctx, store.AdminUser{Username: "alice", PasswordHash: "h", Role: "viewer"}, nil); fault.CodeOf(err) != fault.AlreadyExists {
				t.Fatalf("duplicate username: %v", err)
			}
			if _, err := s.CreateAdminUser(ctx, store.AdminUser{Username: "x", PasswordHash: "h", Role: "root"}, nil); fault.CodeOf(err) != fault.InvalidArgument {
				t.Fatalf("bad role: %v", err)
			}
			bob, err := s.CreateAdminUser(ctx, store.AdminUser{Username: "bob", PasswordHash: "h2", Role: "viewer"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := s.CountActiveAdmins(ctx); err != nil || n != 1 {
				t.Fatalf("active admins: %d %v", n, err)
			}
			if _, err := s.GetAdminUser(ctx, "carol"); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("get missing: %v", err)
			}

			now := time.Now().Truncate(time.Millisecond)
			mk := func(id, user string) {
				t.Helper()
				if _, err := s.CreateAdminSession(ctx, store.AdminSession{ID: id, UserID: user, CreatedAt: now,
					ExpiresAt: now.Add(12 * time.Hour), LastSeenAt: now, UserAgent: "test"}, nil); err != nil {
					t.Fatal(err)
				}
			}
			mk("s1", alice.ID)
			mk("s2", alice.ID)
			mk("s3", bob.ID)
			if _, err := s.CreateAdminSession(ctx, store.AdminSession{ID: "s4", UserID: "nobody", CreatedAt: now, ExpiresAt: now, LastSeenAt: now}, nil); fault.CodeOf(err) != fault.Conflict {
				t.Fatalf("session for a missing user: %v", err)
			}
			sess, u, err := s.GetAdminSession(ctx, "s1")
			if err != nil || sess.UserID != alice.ID || u.Username != "alice" || u.Role != "admin" ||
				u.PasswordHash != "h1" || !sess.ExpiresAt.Equal(now.Add(12*time.Hour)) || u.LastLoginAt == nil || sess.UserAgent != "test" {
				t.Fatalf("get session: %+v %+v %v", sess, u, err)
			}
			if _, _, err := s.GetAdminSession(ctx, "nope"); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("missing session: %v", err)
			}

			// Touch only moves forward.
			if err := s.TouchAdminSession(ctx, "s1", now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := s.TouchAdminSession(ctx, "s1", now); err != nil {
				t.Fatal(err)
			}
			if sess, _, _ := s.GetAdminSession(ctx, "s1"); !sess.LastSeenAt.Equal(now.Add(time.Minute)) {
				t.Fatalf("last seen: %v", sess.LastSeenAt)
			}

			// A role change is seen through the session at once.
			viewer := "viewer"
			if _, err := s.UpdateAdminUser(ctx, "alice", store.AdminUserUpdate{Role: &viewer}, nil); err != nil {
				t.Fatal(err)
			}
			if _, u, _ := s.GetAdminSession(ctx, "s2"); u.Role != "viewer" {
				t.Fatalf("role through session: %s", u.Role)
			}
			// A password change with EndSessions keeps only KeepSession.
			h := "h3"
			if _, err := s.UpdateAdminUser(ctx, "alice", store.AdminUserUpdate{PasswordHash: &h, EndSessions: true, KeepSession: "s2"}, nil); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.GetAdminSession(ctx, "s1"); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("s1 after password change: %v", err)
			}
			if _, u, err := s.GetAdminSession(ctx, "s2"); err != nil || u.PasswordHash != "h3" {
				t.Fatalf("s2 after password change: %+v %v", u, err)
			}
			yes, no := true, false
			got, err := s.UpdateAdminUser(ctx, "bob", store.AdminUserUpdate{Disabled: &yes, EndSessions: true}, nil)
			if err != nil || !got.Disabled() {
				t.Fatalf("disable: %+v %v", got, err)
			}
			if _, _, err := s.GetAdminSession(ctx, "s3"); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("s3 after disable: %v", err)
			}
			if got, err := s.UpdateAdminUser(ctx, "bob", store.AdminUserUpdate{Disabled: &no}, nil); err != nil || got.Disabled() {
				t.Fatalf("enable: %+v %v", got, err)
			}
			if _, err := s.UpdateAdminUser(ctx, "carol", store.AdminUserUpdate{Disabled: &no}, nil); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("update missing: %v", err)
			}

			// Stale sessions: one past its absolute expiry, one idle.
			if _, err := s.CreateAdminSession(ctx, store.AdminSession{ID: "old", UserID: bob.ID, CreatedAt: now.Add(-13 * time.Hour),
				ExpiresAt: now.Add(-time.Hour), LastSeenAt: now}, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateAdminSession(ctx, store.AdminSession{ID: "idle", UserID: bob.ID, CreatedAt: now.Add(-2 * time.Hour),
				ExpiresAt: now.Add(time.Hour), LastSeenAt: now.Add(-2 * time.Hour)}, nil); err != nil {
				t.Fatal(err)
			}
			if n, err := s.DeleteStaleAdminSessions(ctx, now, now.Add(-time.Hour)); err != nil || n != 2 {
				t.Fatalf("stale: %d %v", n, err)
			}
			if list, err := s.ListAdminSessions(ctx, alice.ID); err != nil || len(list) != 1 || list[0].ID != "s2" {
				t.Fatalf("alice sessions: %+v %v", list, err)
			}

			if err := s.DeleteAdminSession(ctx, "s2", nil); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteAdminSession(ctx, "s2", nil); err != nil {
				t.Fatalf("deleting twice: %v", err)
			}
			mk("s5", alice.ID)
			if err := s.DeleteAdminUser(ctx, "alice", nil); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.GetAdminSession(ctx, "s5"); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("session of a deleted user: %v", err)
			}
			if err := s.DeleteAdminUser(ctx, "alice", nil); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("delete twice: %v", err)
			}
			users, err := s.ListAdminUsers(ctx)
			if err != nil || len(users) != 1 || users[0].Username != "bob" {
				t.Fatalf("list: %+v %v", users, err)
			}
		})
	}
}
