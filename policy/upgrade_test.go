package policy_test

import (
	"context"
	"testing"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestEnsureActiveRefusedVersion: an active version stored before the
// sandbox (it calls http.send) does not stop the server from starting, so
// an operator can activate a fixed one; until then the core holds no
// policy and denies every request.
func TestEnsureActiveRefusedVersion(t *testing.T) {
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{DSN: testdb.SQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	pv, err := st.CreatePolicyVersion(ctx, store.PolicyVersion{CreatedBy: "earlier release",
		Policy: "package gatehouse.authz\n\ngrants contains {\"action\": \"publish\", \"filter\": http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1/\"}).body.f}\n"}, nil)

	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ActivatePolicyVersion(ctx, pv.Version, "earlier release", nil); err != nil {
		t.Fatal(err)
	}
	core := authz.New(authz.Config{})
	svc, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: core})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.EnsureActive(ctx); err != nil {
		t.Fatalf("EnsureActive: %v, want a logged refusal and a start without policy", err)
	}
	if v := core.PolicyVersion(); v != 0 {
		t.Fatalf("core runs version %d, want none", v)
	}
	fixed, err := svc.Create(ctx, "op", policy.Default(), "fixed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Activate(ctx, "op", fixed.Version); err != nil || core.PolicyVersion() != fixed.Version {
		t.Fatalf("activate the fixed version: %v, core at %d", err, core.PolicyVersion())
	}
}
