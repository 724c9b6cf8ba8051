package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

func TestListenSQLite(t *testing.T) {
	s, _ := newStore(t, "sqlite")
	err := s.Listen(context.Background(), func(string) { t.Error("fn called on SQLite") })
	if !errors.Is(err, store.ErrNoListen) {
		t.Fatalf("Listen on SQLite = %v, want ErrNoListen", err)
	}
}

// listener runs s.Listen until the test ends and hands over its topics.
type listener struct {
	topics chan string
	done   chan error
}

func listen(t *testing.T, s *store.Store) *listener {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{topics: make(chan string, 64), done: make(chan error, 1)}
	go func() { l.done <- s.Listen(ctx, func(topic string) { l.topics <- topic }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-l.done:
			if err != nil {
				t.Errorf("Listen returned %v after its context ended, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Listen did not return after its context ended")
		}
	})
	l.wantAll(t, "first connect")
	return l
}

// wantAll waits for the once-per-connect call for every topic.
func (l *listener) wantAll(t *testing.T, when string) {
	t.Helper()
	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < len(store.Topics) {
		select {
		case tp := <-l.topics:
			seen[tp] = true
		case <-deadline:
			t.Fatalf("%s: topics %v, want all of %v", when, seen, store.Topics)
		}
	}
}

// want waits for topic, skipping others; it fails after 5 s.
func (l *listener) want(t *testing.T, topic string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-l.topics:
			if got == topic {
				return
			}
		case <-deadline:
			t.Fatalf("no %q notification within 5s", topic)
		}
	}
}

// quiet fails if any notification arrives within d.
func (l *listener) quiet(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case got := <-l.topics:
		t.Fatalf("%s: got notification %q, want none", what, got)
	case <-time.After(d):
	}
}

func TestListenPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.Postgres(t)
	s := open(t, dsn, nil)
	c := testclock.New(base)
	s.SetClock(c.Now)
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil))(t)
	batch(t, s, "b", base.Add(time.Hour), "t1", "t2", "t3")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)
	must(s.CompleteEnrollment(ctx, enrollment("t2", "dev-2", "s2", base)))(t)
	pv := must(s.CreatePolicyVersion(ctx, store.PolicyVersion{Policy: "package x", CreatedBy: "test"}, nil))(t)
	noErr(t, s.AppendAudit(ctx, store.AuditEvent{ID: "taken", Action: "test"}))

	l := listen(t, s)
	l.quiet(t, 200*time.Millisecond, "idle")

	// A rolled-back change announces nothing: the revocation's audit event
	// reuses an existing id, so its insert fails after the pg_notify ran.
	_, err := s.RevokeDevice(ctx, "dev-1", 1, base, &store.AuditEvent{ID: "taken", Action: "device.revoke"})
	if err == nil {
		t.Fatal("revocation with a duplicate audit id committed")
	}
	if d := must(s.GetDevice(ctx, "dev-1"))(t); d.Status != store.DeviceActive {
		t.Fatalf("device after rolled-back revocation is %s", d.Status)
	}
	l.quiet(t, 300*time.Millisecond, "rolled-back revocation")

	writes := []struct {
		name  string
		topic string
		write func() error
	}{
		{"RevokeDevice", store.TopicDevices, func() error {
			_, err := s.RevokeDevice(ctx, "dev-1", 1, base, &store.AuditEvent{Action: "device.revoke"})
			return err
		}},
		{"TransitionDevice", store.TopicDevices, func() error {
			_, err := s.TransitionDevice(ctx, "dev-2", []store.DeviceStatus{store.DeviceActive}, store.DeviceSuspended, base, nil)
			return err
		}},
		{"CompleteEnrollment", store.TopicDevices, func() error {
			_, err := s.CompleteEnrollment(ctx, enrollment("t3", "dev-3", "s3", base))
			return err
		}},
		{"RecordRenewal", store.TopicDevices, func() error {
			return second(s.RecordRenewal(ctx, store.Renewal{DeviceID: "dev-3", OldSerial: "s3", Cert: certificate("dev-3", "s3b", base)}))
		}},
		{"RevokeCertificate", store.TopicDevices, func() error { return s.RevokeCertificate(ctx, "s3b", 1, base) }},
		{"UpdateDevice", store.TopicDevices, func() error {
			_, err := s.UpdateDevice(ctx, store.Device{ID: "dev-3", Profile: profile, Status: store.DeviceActive,
				Labels: map[string]string{"k": "v"}}, nil)

			return err
		}},
		{"RevokeCertificateAudited", store.TopicDevices, func() error {
			_, err := s.RevokeCertificateAudited(ctx, "s2", 1, base, nil)
			return err
		}},
		{"DeleteDevice", store.TopicDevices, func() error {
			if _, err := s.CreateDevice(ctx, store.Device{ID: "dev-4", Fleet: fleet, Profile: profile,
				Status: store.DevicePending}, nil); err != nil {
				return err
			}
			if err := s.DeleteDevice(ctx, "dev-4", nil); err != nil {
				return err
			}
			return nil
		}},
		{"RevokeBatchChunk", store.TopicDevices, func() error {
			j, _, err := s.StartBatchRevocation(ctx, store.RevocationJob{Target: "b", Reason: "keyCompromise", CreatedAt: base}, nil)
			if err != nil {
				return err
			}
			if _, ok, err := s.ClaimRevocationJob(ctx, "r", base, base.Add(time.Hour)); !ok || err != nil {
				return fmt.Errorf("claim: %v %v", ok, err)
			}
			ch, err := s.RevokeBatchChunk(ctx, store.ChunkRequest{JobID: j.ID, Owner: "r", Limit: 10, At: base,
				LeaseUntil: base.Add(time.Hour)})
			if err == nil && len(ch.Devices) == 0 {
				err = fmt.Errorf("chunk revoked nothing: %+v", ch)
			}
			return err
		}},
		{"ActivatePolicyVersion", store.TopicPolicy, func() error {
			_, err := s.ActivatePolicyVersion(ctx, pv.Version, "test", nil)
			return err
		}},
		{"StoreCRL", store.TopicCRL, func() error {
			return s.StoreCRL(ctx, store.CRL{Number: 1, ThisUpdate: base, NextUpdate: base.Add(time.Hour), DER: []byte{1}})
		}},
	}
	for _, w := range writes {
		start := time.Now()
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		l.want(t, w.topic)
		t.Logf("%s: %q notification %v after the call began", w.name, w.topic, time.Since(start))
	}

	// A dropped connection is re-established and, because announcements
	// may have been missed meanwhile, every topic is reported once.
	admin, err := sql.Open("pgx", dsn)
	noErr(t, err)
	defer admin.Close()
	var killed int
	noErr(t, admin.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = 'gatehouse-listen' AND datname = current_database()`).Scan(&killed))
	if killed != 1 {
		t.Fatalf("terminated %d listening connections, want 1", killed)
	}
	l.wantAll(t, "after reconnect")
	noErr(t, s.StoreCRL(ctx, store.CRL{Number: 2, ThisUpdate: base, NextUpdate: base.Add(time.Hour), DER: []byte{2}}))
	l.want(t, store.TopicCRL)
}

// BenchmarkCompleteEnrollmentPostgres is BenchmarkCompleteEnrollment on
// PostgreSQL, where the transaction also announces the change (pg_notify);
// compare with that statement removed to see its cost.
//
//	CI=true go test ./store -run '^$' -bench CompleteEnrollmentPostgres -benchtime 2000x -count 5
func BenchmarkCompleteEnrollmentPostgres(b *testing.B) {
	ctx := context.Background()
	s := open(b, testdb.Postgres(b), nil)
	s.SetClock(testclock.New(base).Now)
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(b)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil))(b)
	toks := make([]store.NewToken, b.N)
	for i := range toks {
		toks[i].Hash = fmt.Sprintf("bench-%09d", i)
	}
	must(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "bench", Fleet: fleet, Profile: profile,
		ExpiresAt: base.Add(time.Hour)}, toks, nil))(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("bench-dev-%09d", i)
		if _, err := s.CompleteEnrollment(ctx, enrollment(toks[i].Hash, id, id, base)); err != nil {
			b.Fatal(err)
		}
	}
}
