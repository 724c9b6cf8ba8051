package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/secret"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// fakeTokens is a TokenStore in a map, by hash; err, when set, is what
// every lookup fails with.
type fakeTokens struct {
	byHash map[string]store.AdminToken
	err    error
}

var _ auth.TokenStore = (*fakeTokens)(nil)

func (f *fakeTokens) CreateAdminToken(_ context.Context, t store.AdminToken, _ *store.AuditEvent) (store.AdminToken, error) {
	t.ID = "id-" + t.Name
	f.byHash[t.Hash] = t
	return t, nil
}

func (f *fakeTokens) GetAdminTokenByHash(_ context.Context, hash string) (store.AdminToken, error) {
	if f.err != nil {
		return store.AdminToken{}, f.err
	}
	t, ok := f.byHash[hash]
	if !ok {
		return store.AdminToken{}, fault.New(fault.NotFound, "admin token not found")
	}
	return t, nil
}

func TestTokenCheck(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	stored := func(name, role string) store.AdminToken {
		return store.AdminToken{ID: "id-" + name, Name: name, Role: role, CreatedAt: created}
	}
	fake := &fakeTokens{byHash: map[string]store.AdminToken{
		secret.Hash("gha_admin"):    stored("root", "admin"),
		secret.Hash("gha_operator"): stored("ci", "operator"),
		secret.Hash("gha_viewer"):   stored("dash", "viewer"),
		// A role this version does not know ranks below every known one.
		secret.Hash("gha_odd"): stored("odd", "superuser"),
	}}
	toks, err := auth.NewTokens(auth.TokensConfig{Store: fake})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		bearer string
		min    auth.Role
		want   fault.Code // "" is success
		wantAs string     // the token's name on success
	}{
		{"unknown", "gha_never-issued", auth.RoleViewer, fault.Unauthenticated, ""},
		{"empty", "", auth.RoleViewer, fault.Unauthenticated, ""},
		{"viewer reads", "gha_viewer", auth.RoleViewer, "", "dash"},
		{"viewer may not write", "gha_viewer", auth.RoleOperator, fault.PermissionDenied, ""},
		{"operator writes", "gha_operator", auth.RoleOperator, "", "ci"},
		{"operator may not administer", "gha_operator", auth.RoleAdmin, fault.PermissionDenied, ""},
		{"admin administers", "gha_admin", auth.RoleAdmin, "", "root"},
		{"admin reads", "gha_admin", auth.RoleViewer, "", "root"},
		{"surrounding space is ignored", " gha_admin\t", auth.RoleAdmin, "", "root"},
		{"unknown stored role", "gha_odd", auth.RoleViewer, fault.PermissionDenied, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := toks.Check(context.Background(), tc.bearer, tc.min)
			if tc.want != "" {
				if fault.CodeOf(err) != tc.want || tok != (auth.Token{}) {
					t.Fatalf("Check = %+v, %v; want %s", tok, err, tc.want)
				}
				return
			}
			if err != nil || tok.Name != tc.wantAs || tok.ID != "id-"+tc.wantAs || !tok.CreatedAt.Equal(created) ||
				tok.Actor() != "token:"+tc.wantAs {
				t.Fatalf("Check = %+v, %v; want token %s", tok, err, tc.wantAs)
			}
		})
	}
}

// The messages are part of the API's answers (api tests pin them too).
func TestTokenCheckMessages(t *testing.T) {
	fake := &fakeTokens{byHash: map[string]store.AdminToken{secret.Hash("gha_v"): {Name: "v", Role: "viewer"}}}
	toks, _ := auth.NewTokens(auth.TokensConfig{Store: fake})
	ctx := context.Background()
	if _, err := toks.Check(ctx, "gha_x", auth.RoleViewer); fault.MessageOf(err) != "unknown or revoked admin token" {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := toks.Check(ctx, "gha_v", auth.RoleOperator); fault.MessageOf(err) != "role viewer may not do this (needs operator)" {
		t.Fatalf("weak role: %v", err)
	}
}

// A failing store is not an unknown token: the caller must not answer it
// with an invalid_token challenge.
func TestTokenCheckStoreError(t *testing.T) {
	down := fault.New(fault.Unavailable, "database is down")
	toks, _ := auth.NewTokens(auth.TokensConfig{Store: &fakeTokens{err: down}})
	if _, err := toks.Check(context.Background(), "gha_any", auth.RoleViewer); !errors.Is(err, down) || fault.Is(err, fault.Unauthenticated) {
		t.Fatalf("Check = %v, want the store's error", err)
	}
}

func TestNewTokensNeedsStore(t *testing.T) {
	if _, err := auth.NewTokens(auth.TokensConfig{}); err == nil {
		t.Fatal("NewTokens without a store succeeded")
	}
}

// Issue stores only the hash, audits the creation, and what it returns
// passes Check: on every backend.
func TestTokenIssue(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.New(ctx, store.Config{DSN: testdb.DSN(t, backend)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			toks, err := auth.NewTokens(auth.TokensConfig{Store: st})
			if err != nil {
				t.Fatal(err)
			}
			s, err := toks.Issue(ctx, "init", "ci", auth.RoleOperator)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(s, auth.TokenPrefix) || !secret.WellFormed(s, auth.TokenPrefix) {
				t.Fatalf("issued %q, want %s + 43 base64url characters", s, auth.TokenPrefix)
			}
			row, err := st.GetAdminTokenByHash(ctx, secret.Hash(s))
			if err != nil || row.Name != "ci" || row.Role != "operator" || strings.Contains(row.Hash, s) {
				t.Fatalf("stored %+v, %v", row, err)
			}
			tok, err := toks.Check(ctx, s, auth.RoleOperator)
			if err != nil || tok.Name != "ci" || tok.Role != auth.RoleOperator || tok.ID != row.ID {
				t.Fatalf("Check(issued) = %+v, %v", tok, err)
			}
			if _, err := toks.Check(ctx, s, auth.RoleAdmin); !fault.Is(err, fault.PermissionDenied) {
				t.Fatalf("Check(issued, admin) = %v, want permission_denied", err)
			}
			evs, err := st.ListAudit(ctx, store.AuditFilter{Action: "admin_token.create"})
			if err != nil || len(evs) != 1 || evs[0].Actor != "init" || evs[0].ObjectType != "admin_token" ||
				evs[0].ObjectID != row.ID || evs[0].Detail != "name=ci role=operator" {
				t.Fatalf("audit = %+v, %v", evs, err)
			}
			if _, err := toks.Issue(ctx, "init", "bad", "root"); !fault.Is(err, fault.InvalidArgument) {
				t.Fatalf("Issue(role root) = %v, want invalid_argument", err)
			}
		})
	}
}

func TestRole(t *testing.T) {
	roles := []auth.Role{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin}
	for i, have := range roles {
		if !have.Valid() {
			t.Fatalf("%s not valid", have)
		}
		for j, need := range roles {
			if got := have.AtLeast(need); got != (i >= j) {
				t.Fatalf("%s.AtLeast(%s) = %t", have, need, got)
			}
			if err := have.Require(need); (err == nil) != (i >= j) || (err != nil && !fault.Is(err, fault.PermissionDenied)) {
				t.Fatalf("%s.Require(%s) = %v", have, need, err)
			}
		}
	}
	for _, r := range []auth.Role{"", "root", "Admin"} {
		if r.Valid() || r.AtLeast(auth.RoleViewer) {
			t.Fatalf("%q is valid or ranks", r)
		}
	}
}
