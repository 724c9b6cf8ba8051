package store_test

import (
	"context"
	"database/sql"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestEnrollmentToken: the pre-signing lookup returns the token, its batch's
// fleet and the batch's profile, and tracks the token's use.
func TestEnrollmentToken(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			s, _ := seeded(t, backend)
			expires := base.Add(time.Hour)
			must(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "b", Fleet: fleet, Profile: profile, ExpiresAt: expires}, []store.NewToken{{Hash: "free"}, {Hash: "fixed", DeviceID: "dev-fixed"}}, nil))(t)
			wantProfile := must(s.GetProfile(ctx, profile))(t)

			tok, p, err := s.GetEnrollmentToken(ctx, "fixed")
			noErr(t, err)
			if tok.Hash != "fixed" || tok.BatchID != "b" || tok.DeviceID != "dev-fixed" || tok.Fleet != fleet ||
				tok.Profile != profile || tok.UsedAt != nil || tok.UsedBy != "" || tok.BatchRevokedAt != nil {
				t.Errorf("token = %+v", tok)
			}
			wantTime(t, "ExpiresAt", tok.ExpiresAt, expires)
			if !reflect.DeepEqual(p, wantProfile) {
				t.Errorf("profile = %+v, want %+v", p, wantProfile)
			}

			must(s.CompleteEnrollment(ctx, enrollment("free", "dev-free", "s-free", base)))(t)
			tok, _, err = s.GetEnrollmentToken(ctx, "free")
			noErr(t, err)
			wantTimePtr(t, "UsedAt", tok.UsedAt, base)
			if tok.UsedBy != "dev-free" {
				t.Errorf("UsedBy = %q, want dev-free", tok.UsedBy)
			}

			_, _, err = s.GetEnrollmentToken(ctx, "no-such-token")
			wantCode(t, err, fault.TokenInvalid)
		})
	}
}

// TestRevokedBatch: a token of a revoked batch is refused at commit and left
// unused, while tokens of other batches still enroll.
func TestRevokedBatch(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn := testdb.DSN(t, backend)
			s := open(t, dsn, nil)
			s.SetClock(func() time.Time { return base })
			must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
			must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"}, Validity: time.Hour}, nil))(t)
			batch(t, s, "revoked", base.Add(time.Hour), "r1")
			batch(t, s, "live", base.Add(time.Hour), "l1")

			// The store has no API to revoke a batch yet; the column is what
			// enrollment checks.
			driver, q := "sqlite", "UPDATE token_batches SET revoked_at = ? WHERE id = ?"
			if backend == "postgres" {
				driver, q = "pgx", "UPDATE token_batches SET revoked_at = $1 WHERE id = $2"
			}
			db, err := sql.Open(driver, dsn)
			noErr(t, err)
			defer db.Close()
			_, err = db.ExecContext(ctx, q, base.UnixMilli(), "revoked")
			noErr(t, err)

			tok, _, err := s.GetEnrollmentToken(ctx, "r1")
			noErr(t, err)
			wantTimePtr(t, "BatchRevokedAt", tok.BatchRevokedAt, base)

			_, err = s.CompleteEnrollment(ctx, enrollment("r1", "dev-r1", "s-r1", base))
			wantCode(t, err, fault.TokenRevoked)
			if tok := must(s.GetBootstrapToken(ctx, "r1"))(t); tok.UsedAt != nil {
				t.Errorf("a refused token was consumed: %+v", tok)
			}
			wantCode(t, second(s.GetDevice(ctx, "dev-r1")), fault.NotFound)

			must(s.CompleteEnrollment(ctx, enrollment("l1", "dev-l1", "s-l1", base)))(t)
		})
	}
}

// TestSQLiteSingleConnection: with MaxOpenConns 1 the writer still leaves
// the pool a connection to read with.
func TestSQLiteSingleConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.New(ctx, store.Config{DSN: testdb.SQLite(t), MaxOpenConns: 1})
	noErr(t, err)
	defer s.Close()
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"}, Validity: time.Hour}, nil))(t)
	batch(t, s, "b", base.Add(time.Hour), "t1")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s-1", base)))(t)
	must(s.GetDevice(ctx, "dev-1"))(t)
	must(s.ListCertificates(ctx, "dev-1"))(t)
}
