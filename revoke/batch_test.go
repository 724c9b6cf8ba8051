package revoke_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// effects counts the side effects the service runs after each change.
type effects struct {
	syncs, publishes atomic.Int64
	mu               sync.Mutex
	kicked           []string
}

func (e *effects) Sync(context.Context) (int, error)    { e.syncs.Add(1); return 0, nil }
func (e *effects) Publish(context.Context) error        { e.publishes.Add(1); return nil }
func (e *effects) Cancel(context.Context, string) error { return nil }
func (e *effects) Kick(_ context.Context, id, _ string) error {
	e.mu.Lock()
	e.kicked = append(e.kicked, id)
	e.mu.Unlock()
	return nil
}

// fixture opens a store on dsn with fleet f, profile p and a batch "lot" of
// n tokens, all used by enrolled devices; it returns the device ids.
func fixture(t testing.TB, dsn string, n int) (*store.Store, []string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.CreateFleet(ctx, store.Fleet{Name: "f"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateProfile(ctx, store.Profile{Name: "p", KeyTypes: []string{"ecdsa-p256"}, Validity: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	toks := make([]store.NewToken, n)
	for i := range toks {
		toks[i] = store.NewToken{Hash: fmt.Sprintf("h%06d", i)}
	}
	now := time.Now()
	if _, err := st.CreateTokenBatch(ctx, store.TokenBatch{ID: "lot", Fleet: "f", Profile: "p", ExpiresAt: now.Add(time.Hour)}, toks, nil); err != nil {
		t.Fatal(err)
	}
	devs := make([]string, n)
	for i := range devs {
		devs[i] = fmt.Sprintf("dev-%06d", i)
		serial := fmt.Sprintf("s%06d", i)
		if _, err := st.CompleteEnrollment(ctx, store.Enrollment{TokenHash: toks[i].Hash, At: now,
			Device: store.Device{ID: devs[i], Fleet: "f", Profile: "p"},
			Cert: store.Certificate{Serial: serial, Fingerprint: "fp" + serial, DeviceID: devs[i], NotBefore: now,
				NotAfter: now.Add(time.Hour), PEM: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	return st, devs
}

func newService(t testing.TB, st *store.Store, e *effects, chunk int) *revoke.Service {
	t.Helper()
	s, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: e, CRL: e, Sessions: e, ChunkSize: chunk,
		PollInterval: 20 * time.Millisecond, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *effects) kicks() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.kicked)
}

// eventually waits for cond: a step's side effects run just after the step
// commits, so the job can read done a moment before its last kicks land.
func eventually(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("side effects did not settle within 5s")
		}
	}
}

// waitDone polls the job until it is no longer running.
func waitDone(t testing.TB, s *revoke.Service, id string, within time.Duration) store.RevocationJob {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := s.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != store.JobRunning {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still running after %v: %+v", within, j)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBatchSideEffects: each step refreshes the decision core once and
// kicks each of its devices once; the CRL is republished at most once a
// second while the job runs, and at its end.
func TestBatchSideEffects(t *testing.T) {
	st, devs := fixture(t, testdb.SQLite(t), 25)
	e := &effects{}
	s := newService(t, st, e, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()

	_, _, err := s.RevokeBatch(ctx, "lot", revoke.Request{Actor: "ops", Reason: "stolen"})
	if fault.CodeOf(err) != fault.InvalidArgument {
		t.Fatalf("bad reason: %v", err)
	}
	_, _, err = s.RevokeBatch(ctx, "missing", revoke.Request{Actor: "ops"})
	if fault.CodeOf(err) != fault.NotFound {
		t.Fatalf("unknown batch: %v", err)
	}
	job, created, err := s.RevokeBatch(ctx, "lot", revoke.Request{Actor: "ops", Reason: "keyCompromise", Note: "lot 7 leaked"})
	if err != nil || !created {
		t.Fatalf("RevokeBatch: %v created=%v", err, created)
	}
	j := waitDone(t, s, job.ID, 10*time.Second)
	if j.Status != store.JobDone || j.Done != 25 || j.Revoked != 25 || j.Total != 25 {
		t.Fatalf("job = %+v", j)
	}
	eventually(t, func() bool { return len(e.kicks()) == 25 && e.publishes.Load() >= 2 && e.syncs.Load() == 3 })
	if n := e.syncs.Load(); n != 3 {
		t.Errorf("core syncs = %d, want one per step (3)", n)
	}
	// The CRL is republished at most once a second while a job runs, and
	// always when it ends: here the first step and the last (a third only
	// if a step took over a second).
	if n := e.publishes.Load(); n < 2 || n > 3 {
		t.Errorf("CRL publications = %d, want the first step's and the last (2, at most 3)", n)
	}
	kicked := e.kicks()
	slices.Sort(kicked)
	if !slices.Equal(kicked, devs) {
		t.Errorf("kicked %v, want every device once", kicked)
	}
	again, created, err := s.RevokeBatch(ctx, "lot", revoke.Request{Actor: "ops", Reason: "keyCompromise"})
	if err != nil || created || again.ID != job.ID || again.Status != store.JobDone {
		t.Errorf("second RevokeBatch = %+v created=%v err=%v", again, created, err)
	}
	ev, err := st.ListAudit(ctx, store.AuditFilter{ObjectType: "device", ObjectID: devs[0]})
	if err != nil || len(ev) != 1 || ev[0].Action != "device.revoke" || ev[0].Actor != "ops" {
		t.Errorf("device audit = %+v, %v", ev, err)
	}
}

// TestBatchResumeOnRestart: a replica starts a job and stops before running
// it; another replica's Run takes it over when the lease runs out and
// finishes it.
func TestBatchResumeOnRestart(t *testing.T) {
	dsn := testdb.SQLite(t)
	st, _ := fixture(t, dsn, 30)
	a := newService(t, st, &effects{}, 7)
	job, _, err := a.RevokeBatch(context.Background(), "lot", revoke.Request{Actor: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	// Replica a runs one step by hand, then "dies" (never runs again).
	claimed, ok, err := st.ClaimRevocationJob(context.Background(), "replica-a", time.Now(), time.Now().Add(300*time.Millisecond))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, err := st.RevokeBatchChunk(context.Background(), store.ChunkRequest{JobID: claimed.ID, Owner: "replica-a",
		Limit: 7, At: time.Now(), LeaseUntil: time.Now().Add(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	st2, err := store.New(context.Background(), store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	b := newService(t, st2, &effects{}, 7)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = b.Run(ctx) }()
	j := waitDone(t, b, job.ID, 10*time.Second)
	if j.Status != store.JobDone || j.Done != 30 || j.Revoked != 30 {
		t.Fatalf("job = %+v", j)
	}
}

// BenchmarkBatchRevocation10k measures revoking a batch of 10k enrolled
// devices end to end (steps of 500, with core refresh, CRL and kick
// callbacks that do nothing), on SQLite and, when configured, PostgreSQL.
func BenchmarkBatchRevocation10k(b *testing.B) {
	for _, backend := range testdb.All() {
		b.Run(backend, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				st, _ := fixture(b, testdb.DSN(b, backend), 10000)
				s := newService(b, st, &effects{}, 500)
				ctx, cancel := context.WithCancel(context.Background())
				b.StartTimer()
				go func() { _ = s.Run(ctx) }()
				job, _, err := s.RevokeBatch(ctx, "lot", revoke.Request{Actor: "bench", Reason: "keyCompromise"})
				if err != nil {
					b.Fatal(err)
				}
				j := waitDone(b, s, job.ID, 5*time.Minute)
				b.StopTimer()
				cancel()
				if j.Revoked != 10000 {
					b.Fatalf("job = %+v", j)
				}
			}
		})
	}
}

// TestBatchTwoReplicas: two replicas (each its own Store and Service on one
// database) run jobs at once; every device is revoked, kicked and audited
// exactly once, whichever replica ran which step.
func TestBatchTwoReplicas(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			dsn := testdb.DSN(t, backend)
			st1, devs := fixture(t, dsn, 120)
			st2, err := store.New(context.Background(), store.Config{DSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			e1, e2 := &effects{}, &effects{}
			a, b := newService(t, st1, e1, 10), newService(t, st2, e2, 10)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			wg.Go(func() { _ = a.Run(ctx) })
			wg.Go(func() { _ = b.Run(ctx) })
			job, _, err := b.RevokeBatch(ctx, "lot", revoke.Request{Actor: "ops", Reason: "superseded"})
			if err != nil {
				t.Fatal(err)
			}
			j := waitDone(t, a, job.ID, 30*time.Second)
			if j.Status != store.JobDone || j.Done != 120 || j.Revoked != 120 {
				t.Fatalf("job = %+v", j)
			}
			eventually(t, func() bool { return len(e1.kicks())+len(e2.kicks()) >= len(devs) })
			kicked := append(e1.kicks(), e2.kicks()...)
			slices.Sort(kicked)
			if !slices.Equal(kicked, devs) {
				t.Errorf("kicked %d devices (%d duplicates?), want each of %d once", len(kicked), len(kicked)-len(slices.Compact(slices.Clone(kicked))), len(devs))
			}
			for _, d := range devs {
				ev, err := st1.ListAudit(ctx, store.AuditFilter{ObjectType: "device", ObjectID: d})
				if err != nil || len(ev) != 1 {
					t.Fatalf("%s audit = %+v, %v; want one event", d, ev, err)
				}
			}
		})
	}
}

// slowCRL is a CRL whose generation takes a while (a list of a million
// entries takes seconds to sign).
type slowCRL struct {
	*effects
	took time.Duration
}

func (c slowCRL) Publish(ctx context.Context) error {
	c.publishes.Add(1)
	select {
	case <-time.After(c.took):
		return nil
	case <-ctx.Done():
		// As crl.Publisher: the caller stops waiting, the generation goes on.
		return fault.Wrap(ctx.Err(), fault.Unavailable, "CRL publication still running")
	}
}

// TestBatchStepsDoNotWaitForTheCRL: a slow CRL generation does not hold
// back the job: every device of a multi-step job is kicked (and the core
// refreshed) long before one generation ends, and the job still ends with a
// publication.
func TestBatchStepsDoNotWaitForTheCRL(t *testing.T) {
	st, devs := fixture(t, testdb.SQLite(t), 60)
	e := &effects{}
	const took = 1500 * time.Millisecond
	s, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: e, CRL: slowCRL{e, took}, Sessions: e, ChunkSize: 10,
		PollInterval: 20 * time.Millisecond, Lease: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	begin := time.Now()
	job, _, err := s.RevokeBatch(ctx, "lot", revoke.Request{Actor: "ops", Reason: "keyCompromise"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return len(e.kicks()) == len(devs) })
	if d := time.Since(begin); d > took/2 {
		t.Errorf("all %d devices kicked after %v: the steps waited for the CRL (%v)", len(devs), d, took)
	}
	j := waitDone(t, s, job.ID, 10*time.Second)
	if j.Revoked != int64(len(devs)) || e.publishes.Load() < 2 {
		t.Fatalf("job %+v, publications %d", j, e.publishes.Load())
	}
}
