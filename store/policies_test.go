package store_test

import (
	"context"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

func TestPolicyVersions(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, testdb.DSN(t, backend), nil)
			if _, err := s.ActivePolicy(ctx); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("active on empty store: %v", err)
			}
			for i := 1; i <= 3; i++ {
				v, err := s.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: "p", Tests: "t", Digest: "d", CreatedBy: "me"}, nil)
				if err != nil || v.Version != int64(i) {
					t.Fatalf("create %d: %+v %v", i, v, err)
				}
			}
			if _, err := s.ActivatePolicyVersion(ctx, 42, "me", nil); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("activate missing version: %v", err)
			}
			for _, v := range []int64{2, 3, 1} {
				if _, err := s.ActivatePolicyVersion(ctx, v, "me", nil); err != nil {
					t.Fatal(err)
				}
			}
			act, err := s.ActivePolicy(ctx)
			if err != nil || act.Version != 1 {
				t.Fatalf("active after rollback to 1: %+v %v", act, err)
			}
			hist, err := s.ListPolicyActivations(ctx, 10)
			if err != nil || len(hist) != 3 || hist[0].Version != 1 || hist[2].Version != 2 {
				t.Fatalf("history: %+v %v", hist, err)
			}
			vs, err := s.ListPolicyVersions(ctx)
			if err != nil || len(vs) != 3 || vs[0].Version != 3 {
				t.Fatalf("list: %+v %v", vs, err)
			}
			if _, err := s.GetPolicyVersion(ctx, 9); fault.CodeOf(err) != fault.NotFound {
				t.Fatalf("get missing: %v", err)
			}
		})
	}
}
