package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// base is the fixed clock every test starts from; whole seconds, so the
// millisecond precision of the store round-trips it exactly.
var base = time.Date(2030, time.March, 1, 12, 0, 0, 0, time.UTC)

const (
	fleet   = "factory"
	profile = "sensor"
)

// TestStore is the conformance suite: every case runs against every backend,
// each on a fresh database.
func TestStore(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, backend string)
	}{
		{"Migrations", testMigrations},
		{"Fleets", testFleets},
		{"Profiles", testProfiles},
		{"Devices", testDevices},
		{"ListDevices", testListDevices},
		{"TokenBatches", testTokenBatches},
		{"CompleteEnrollment", testCompleteEnrollment},
		{"EnrollmentRace", testEnrollmentRace},
		{"SameDeviceRace", testSameDeviceRace},
		{"RecordRenewal", testRecordRenewal},
		{"RenewalRace", testRenewalRace},
		{"RevokeCertificate", testRevokeCertificate},
		{"AdminTokens", testAdminTokens},
		{"Audit", testAudit},
	}
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, backend) })
			}
		})
	}
}

// --- helpers ---------------------------------------------------------------

// open opens dsn, failing the test on error, and closes the store at the end.
func open(t testing.TB, dsn string, log *slog.Logger) *store.Store {
	t.Helper()
	s, err := store.New(context.Background(), store.Config{DSN: dsn, Logger: log})
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// newStore returns a store on a fresh database of backend, its clock set to base.
func newStore(t testing.TB, backend string) (*store.Store, *testclock.Clock) {
	t.Helper()
	s := open(t, testdb.DSN(t, backend), nil)
	c := testclock.New(base)
	s.SetClock(c.Now)
	return s, c
}

// seeded is newStore plus the fleet and profile most cases need.
func seeded(t testing.TB, backend string) (*store.Store, *testclock.Clock) {
	t.Helper()
	s, c := newStore(t, backend)
	ctx := context.Background()
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"},
		Validity: 30 * 24 * time.Hour, RenewWindow: 10 * 24 * time.Hour}, nil))(t)
	return s, c
}

// must(f())(t) returns f's value, failing t if f returned an error.
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// wantCode fails unless err carries code.
func wantCode(t testing.TB, err error, code fault.Code) {
	t.Helper()
	if got := fault.CodeOf(err); got != code {
		t.Fatalf("error code = %q (err: %v), want %q", got, err, code)
	}
}

func wantTime(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantTimePtr(t testing.TB, what string, got *time.Time, want time.Time) {
	t.Helper()
	if got == nil {
		t.Errorf("%s = nil, want %v", what, want)
		return
	}
	wantTime(t, what, *got, want)
}

// batch creates a token batch in the default fleet with one token per hash.
func batch(t testing.TB, s *store.Store, id string, expires time.Time, hashes ...string) store.TokenBatch {
	t.Helper()
	toks := make([]store.NewToken, len(hashes))
	for i, h := range hashes {
		toks[i] = store.NewToken{Hash: h}
	}
	return must(s.CreateTokenBatch(context.Background(), store.TokenBatch{ID: id, Fleet: fleet, Profile: profile, ExpiresAt: expires, CreatedBy: "test"}, toks, nil))(t)
}

// enrollment builds an enrollment of device id with a certificate whose
// serial and fingerprint derive from serial.
func enrollment(hash, id, serial string, at time.Time) store.Enrollment {
	return store.Enrollment{
		TokenHash: hash,
		Device:    store.Device{ID: id, Fleet: fleet, Profile: profile, Labels: map[string]string{"via": "token"}},
		Cert:      certificate(id, serial, at),
		At:        at,
	}
}

func certificate(deviceID, serial string, at time.Time) store.Certificate {
	return store.Certificate{Serial: serial, Fingerprint: "fp-" + serial, DeviceID: deviceID,
		NotBefore: at, NotAfter: at.Add(30 * 24 * time.Hour), PEM: "-----BEGIN CERTIFICATE-----\n" + serial}
}

func ids(ds []store.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// warm opens pool connections ahead of a race, so the racers contend in the
// database rather than queueing on connection setup.
func warm(t testing.TB, s *store.Store) {
	t.Helper()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if _, err := s.ListFleets(context.Background()); err != nil {
				t.Errorf("warm up: %v", err)
			}
		})
	}
	wg.Wait()
}

// logCounter counts "migration applied" records.
type logCounter struct {
	mu sync.Mutex
	n  int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "migration applied" {
		l.mu.Lock()
		l.n++
		l.mu.Unlock()
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) count() int                         { l.mu.Lock(); defer l.mu.Unlock(); return l.n }

// --- cases -------------------------------------------------------------------

func testMigrations(t *testing.T, backend string) {
	ctx := context.Background()
	dsn := testdb.DSN(t, backend)

	first := &logCounter{}
	s1, err := store.New(ctx, store.Config{DSN: dsn, Logger: slog.New(first)})
	if err != nil {
		t.Fatalf("first open: %v", err)
	}
	if first.count() == 0 {
		t.Fatalf("fresh database: no migration applied")
	}
	fleets, err := s1.ListFleets(ctx)
	if err != nil || len(fleets) != 0 {
		t.Fatalf("fresh database: ListFleets = %v, %v; want empty", fleets, err)
	}
	must(s1.CreateFleet(ctx, store.Fleet{Name: "kept", Description: "survives reopen"}, nil))(t)

	// A second store on the same database while the first is open (a second
	// replica), then after the first closed (a restart): neither migrates again.
	second := &logCounter{}
	s2 := open(t, dsn, slog.New(second))
	noErr(t, s1.Close())
	s3 := open(t, dsn, slog.New(second))
	if n := second.count(); n != 0 {
		t.Errorf("reopen applied %d migrations, want 0", n)
	}
	for i, s := range []*store.Store{s2, s3} {
		f, err := s.GetFleet(ctx, "kept")
		if err != nil || f.Description != "survives reopen" {
			t.Errorf("store %d: GetFleet(kept) = %+v, %v; want the row written before reopening", i+2, f, err)
		}
		noErr(t, s.Ping(ctx))
	}

	if backend == "postgres" {
		// Replicas starting at once on a fresh database: the advisory lock
		// lets exactly one of them migrate.
		dsn := testdb.DSN(t, backend)
		applied := &logCounter{}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				s, err := store.New(ctx, store.Config{DSN: dsn, Logger: slog.New(applied)})
				if err == nil {
					err = s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("concurrent open %d: %v", i, err)
			}
		}
		if n, want := applied.count(), first.count(); n != want {
			t.Errorf("concurrent opens applied %d migrations in total, want %d", n, want)
		}
	}

	if _, err := store.New(ctx, store.Config{}); fault.CodeOf(err) != fault.InvalidArgument {
		t.Errorf("empty DSN: code %q (%v), want %q", fault.CodeOf(err), err, fault.InvalidArgument)
	}
}

// TestSQLitePath: an SQLite DSN is a file path, and characters that mean
// something in a URI (%, ?, #) are part of the name.
func TestSQLitePath(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"plain", "100% sure", "what?", "tag#1", "a%3Fb", "sp ace&x=y"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			noErr(t, os.Mkdir(dir, 0o700))
			path := filepath.Join(dir, "gatehouse.db")
			s := open(t, path, nil)
			must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("database not at %q: %v", path, err)
			}
			// The pragmas were applied: WAL journal, foreign keys enforced.
			if _, err := os.Stat(path + "-wal"); err != nil {
				t.Errorf("no WAL file beside the database: %v", err)
			}
			_, err := s.CreateDevice(ctx, store.Device{ID: "d", Fleet: "nope", Profile: "nope", Status: store.DevicePending}, nil)
			wantCode(t, err, fault.Conflict)
			entries, err := os.ReadDir(filepath.Dir(dir))
			noErr(t, err)
			if len(entries) != 1 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("files beside the data directory: %q, want only %q", names, name)
			}
			// A second store on the path sees the same database.
			if _, err := open(t, path, nil).GetFleet(ctx, fleet); err != nil {
				t.Errorf("reopen: %v", err)
			}
		})
	}
}

func testFleets(t *testing.T, backend string) {
	ctx := context.Background()
	s, clk := newStore(t, backend)

	f := must(s.CreateFleet(ctx, store.Fleet{Name: fleet, Description: "line 1"}, nil))(t)
	if f.Name != fleet || f.Description != "line 1" {
		t.Errorf("CreateFleet returned %+v", f)
	}
	wantTime(t, "CreatedAt", f.CreatedAt, base)
	wantTime(t, "UpdatedAt", f.UpdatedAt, base)
	if got := must(s.GetFleet(ctx, fleet))(t); !reflect.DeepEqual(got, f) {
		t.Errorf("GetFleet = %+v, want %+v", got, f)
	}
	must(s.CreateFleet(ctx, store.Fleet{Name: "aardvark"}, nil))(t)
	if got := must(s.ListFleets(ctx))(t); len(got) != 2 || got[0].Name != "aardvark" || got[1].Name != fleet {
		t.Errorf("ListFleets = %+v, want aardvark, %s", got, fleet)
	}

	clk.Set(base.Add(time.Hour))
	u := must(s.UpdateFleet(ctx, store.Fleet{Name: fleet, Description: "line 2"}, nil))(t)
	if u.Description != "line 2" {
		t.Errorf("UpdateFleet description = %q", u.Description)
	}
	wantTime(t, "updated CreatedAt", u.CreatedAt, base)
	wantTime(t, "updated UpdatedAt", u.UpdatedAt, base.Add(time.Hour))
	if got := must(s.GetFleet(ctx, fleet))(t); got.Description != "line 2" {
		t.Errorf("GetFleet after update: description %q", got.Description)
	}

	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ed25519"}, Validity: time.Hour}, nil))(t)
	must(s.CreateDevice(ctx, store.Device{ID: "dev-1", Fleet: fleet, Profile: profile, Status: store.DevicePending}, nil))(t)

	errCases := []struct {
		name string
		err  error
		code fault.Code
	}{
		{"duplicate create", second(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil)), fault.AlreadyExists},
		{"get missing", second(s.GetFleet(ctx, "nope")), fault.NotFound},
		{"update missing", second(s.UpdateFleet(ctx, store.Fleet{Name: "nope"}, nil)), fault.NotFound},
		{"delete missing", s.DeleteFleet(ctx, "nope", nil), fault.NotFound},
		{"delete referenced by device", s.DeleteFleet(ctx, fleet, nil), fault.Conflict},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, c.code) })
	}
	if _, err := s.GetFleet(ctx, fleet); err != nil {
		t.Errorf("referenced fleet is gone after refused delete: %v", err)
	}

	noErr(t, s.DeleteFleet(ctx, "aardvark", nil))
	wantCode(t, second(s.GetFleet(ctx, "aardvark")), fault.NotFound)
}

// second drops a result and keeps the error, to tabulate error cases.
func second[T any](_ T, err error) error { return err }

func testProfiles(t *testing.T, backend string) {
	ctx := context.Background()
	s, clk := newStore(t, backend)

	cases := []store.Profile{
		{Name: "full", KeyTypes: []string{"ecdsa-p256", "ed25519", "rsa-2048"}, Roles: []string{"telemetry", "ota"},
			Validity: 90 * 24 * time.Hour, RenewWindow: 30 * 24 * time.Hour, SupersededGrace: new(time.Duration(0)),
			RenewAfterExpiry: new(30 * 24 * time.Hour), ServerKeygen: new(true), DeviceIDFrom: store.DeviceIDFromCSRSerial},
		{Name: "minimal", KeyTypes: []string{"ed25519"}, Validity: 90 * time.Second},
	}
	for _, p := range cases {
		t.Run(p.Name, func(t *testing.T) {
			got := must(s.CreateProfile(ctx, p, nil))(t)
			// Unset, the grace is the default, renew_after_expiry 0,
			// server_keygen off and the device id the token's.
			p.CreatedAt, p.UpdatedAt, p.SupersededGrace = base, base, new(p.Grace())
			p.RenewAfterExpiry, p.ServerKeygen, p.DeviceIDFrom = new(p.AfterExpiry()), new(p.KeygenOnServer()), p.IDFrom()
			if !reflect.DeepEqual(got, p) {
				t.Errorf("CreateProfile = %+v, want %+v", got, p)
			}
			if got := must(s.GetProfile(ctx, p.Name))(t); !reflect.DeepEqual(got, p) {
				t.Errorf("GetProfile = %+v, want %+v", got, p)
			}
		})
	}
	list := must(s.ListProfiles(ctx))(t)
	if len(list) != 2 || list[0].Name != "full" || list[1].Name != "minimal" {
		t.Errorf("ListProfiles = %+v", list)
	}

	clk.Set(base.Add(time.Minute))
	upd := store.Profile{Name: "full", KeyTypes: []string{"ed25519"}, Roles: []string{"admin-ish"},
		Validity: 7 * 24 * time.Hour, RenewWindow: 0}
	got := must(s.UpdateProfile(ctx, upd, nil))(t)
	// Unset in an update, the grace, renew_after_expiry, server_keygen and
	// device_id_from are kept.
	upd.CreatedAt, upd.UpdatedAt, upd.SupersededGrace = base, base.Add(time.Minute), new(time.Duration(0))
	upd.RenewAfterExpiry, upd.ServerKeygen, upd.DeviceIDFrom = new(30*24*time.Hour), new(true), store.DeviceIDFromCSRSerial
	if !reflect.DeepEqual(got, upd) {
		t.Errorf("UpdateProfile = %+v, want %+v", got, upd)
	}
	upd.SupersededGrace, upd.RenewAfterExpiry = new(90*time.Minute), new(time.Duration(0))
	upd.ServerKeygen, upd.DeviceIDFrom = new(false), store.DeviceIDFromToken
	if got := must(s.UpdateProfile(ctx, upd, nil))(t); got.Grace() != 90*time.Minute || got.AfterExpiry() != 0 ||
		got.KeygenOnServer() || got.IDFrom() != store.DeviceIDFromToken {
		t.Errorf("UpdateProfile grace, renew_after_expiry, server_keygen, device_id_from = %v, %v, %v, %q, want 1h30m, 0, false, token",
			got.Grace(), got.AfterExpiry(), got.KeygenOnServer(), got.IDFrom())
	}
	// The schema refuses what the domain never writes.
	upd.DeviceIDFrom = "cn"
	wantCode(t, second(s.UpdateProfile(ctx, upd, nil)), fault.InvalidArgument)
	upd.DeviceIDFrom = ""

	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s.CreateDevice(ctx, store.Device{ID: "dev-1", Fleet: fleet, Profile: "full", Status: store.DevicePending}, nil))(t)
	errCases := []struct {
		name string
		err  error
		code fault.Code
	}{
		{"duplicate create", second(s.CreateProfile(ctx, store.Profile{Name: "full", Validity: time.Hour}, nil)), fault.AlreadyExists},
		{"zero validity", second(s.CreateProfile(ctx, store.Profile{Name: "zero", KeyTypes: []string{"ed25519"}}, nil)), fault.InvalidArgument},
		{"get missing", second(s.GetProfile(ctx, "nope")), fault.NotFound},
		{"update missing", second(s.UpdateProfile(ctx, store.Profile{Name: "nope", Validity: time.Hour}, nil)), fault.NotFound},
		{"delete missing", s.DeleteProfile(ctx, "nope", nil), fault.NotFound},
		{"delete referenced by device", s.DeleteProfile(ctx, "full", nil), fault.Conflict},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, c.code) })
	}
	noErr(t, s.DeleteProfile(ctx, "minimal", nil))
	wantCode(t, second(s.GetProfile(ctx, "minimal")), fault.NotFound)
}

func testDevices(t *testing.T, backend string) {
	ctx := context.Background()
	s, clk := seeded(t, backend)
	must(s.CreateProfile(ctx, store.Profile{Name: "gateway", KeyTypes: []string{"ed25519"}, Validity: time.Hour}, nil))(t)

	d := store.Device{ID: "dev-1", Fleet: fleet, Profile: profile, Status: store.DevicePending,
		Labels: map[string]string{"site": "berlin", "rack": "r7", "quote": `a"b,c`}}
	got := must(s.CreateDevice(ctx, d, nil))(t)
	d.CreatedAt, d.UpdatedAt = base, base
	if !reflect.DeepEqual(got, d) {
		t.Errorf("CreateDevice = %+v, want %+v", got, d)
	}
	if got := must(s.GetDevice(ctx, "dev-1"))(t); !reflect.DeepEqual(got, d) {
		t.Errorf("GetDevice = %+v, want %+v", got, d)
	}
	bare := must(s.CreateDevice(ctx, store.Device{ID: "dev-2", Fleet: fleet, Profile: profile, Status: store.DeviceActive}, nil))(t)
	if len(bare.Labels) != 0 {
		t.Errorf("device without labels has labels %v", bare.Labels)
	}

	clk.Set(base.Add(time.Second))
	d.Status, d.Profile, d.Labels = store.DeviceSuspended, "gateway", map[string]string{"site": "paris"}
	got = must(s.UpdateDevice(ctx, d, nil))(t)
	d.UpdatedAt = base.Add(time.Second)
	if !reflect.DeepEqual(got, d) {
		t.Errorf("UpdateDevice = %+v, want %+v", got, d)
	}

	errCases := []struct {
		name string
		err  error
		code fault.Code
	}{
		{"duplicate id", second(s.CreateDevice(ctx, store.Device{ID: "dev-1", Fleet: fleet, Profile: profile, Status: store.DevicePending}, nil)), fault.AlreadyExists},
		{"missing fleet", second(s.CreateDevice(ctx, store.Device{ID: "dev-3", Fleet: "nope", Profile: profile, Status: store.DevicePending}, nil)), fault.Conflict},
		{"missing profile", second(s.CreateDevice(ctx, store.Device{ID: "dev-3", Fleet: fleet, Profile: "nope", Status: store.DevicePending}, nil)), fault.Conflict},
		{"create invalid status", second(s.CreateDevice(ctx, store.Device{ID: "dev-3", Fleet: fleet, Profile: profile, Status: "bogus"}, nil)), fault.InvalidArgument},
		{"update invalid status", second(s.UpdateDevice(ctx, store.Device{ID: "dev-2", Profile: profile, Status: "bogus"}, nil)), fault.InvalidArgument},
		{"update missing profile", second(s.UpdateDevice(ctx, store.Device{ID: "dev-2", Profile: "nope", Status: store.DeviceActive}, nil)), fault.Conflict},
		{"update missing", second(s.UpdateDevice(ctx, store.Device{ID: "nope", Profile: profile, Status: store.DeviceActive}, nil)), fault.NotFound},
		{"get missing", second(s.GetDevice(ctx, "nope")), fault.NotFound},
		{"delete missing", s.DeleteDevice(ctx, "nope", nil), fault.NotFound},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, c.code) })
	}
	if got := must(s.GetDevice(ctx, "dev-2"))(t); got.Status != store.DeviceActive || got.Profile != profile {
		t.Errorf("refused updates changed dev-2: %+v", got)
	}
	wantCode(t, second(s.GetDevice(ctx, "dev-3")), fault.NotFound)

	// A device that holds a certificate cannot be deleted; one that does not can.
	batch(t, s, "b1", base.Add(time.Hour), "tok-1")
	must(s.CompleteEnrollment(ctx, enrollment("tok-1", "dev-4", "s-4", base)))(t)
	wantCode(t, s.DeleteDevice(ctx, "dev-4", nil), fault.Conflict)
	noErr(t, s.DeleteDevice(ctx, "dev-2", nil))
	wantCode(t, second(s.GetDevice(ctx, "dev-2")), fault.NotFound)
}

func testListDevices(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	must(s.CreateFleet(ctx, store.Fleet{Name: "lab"}, nil))(t)

	type dev struct {
		id     string
		fleet  string
		status store.DeviceStatus
	}
	devs := []dev{
		{"dev-1", fleet, store.DeviceActive},
		{"dev-10", fleet, store.DevicePending},
		{"dev-1_a", "lab", store.DeviceActive},
		{"dev-1%", fleet, store.DeviceSuspended},
		{"dev-2", fleet, store.DeviceActive},
		{"dev_1", "lab", store.DevicePending},
		{"devX1", fleet, store.DeviceActive},
		{"dev%1", fleet, store.DeviceRevoked},
		{"dev%x", "lab", store.DeviceActive},
		{"dev", fleet, store.DeviceActive},
		{"other", "lab", store.DeviceActive},
	}
	for _, d := range devs {
		must(s.CreateDevice(ctx, store.Device{ID: d.id, Fleet: d.fleet, Profile: profile, Status: d.status}, nil))(t)
	}
	sorted := func(v ...string) []string { sort.Strings(v); return v }
	all := make([]string, len(devs))
	for i, d := range devs {
		all[i] = d.id
	}
	sort.Strings(all) // byte order, the order both backends must page in
	after := func(id string) []string { return all[sort.SearchStrings(all, id+"\x00"):] }

	cases := []struct {
		name   string
		filter store.DeviceFilter
		want   []string
	}{
		{"all", store.DeviceFilter{}, all},
		{"fleet", store.DeviceFilter{Fleet: "lab"}, sorted("dev-1_a", "dev_1", "dev%x", "other")},
		{"status", store.DeviceFilter{Status: store.DevicePending}, sorted("dev-10", "dev_1")},
		{"fleet and status", store.DeviceFilter{Fleet: fleet, Status: store.DeviceActive}, sorted("dev-1", "dev-2", "devX1", "dev")},
		{"search prefix", store.DeviceFilter{Search: "dev-1"}, sorted("dev-1", "dev-10", "dev-1_a", "dev-1%")},
		{"search excludes sibling", store.DeviceFilter{Search: "dev-2"}, []string{"dev-2"}},
		{"search underscore is literal", store.DeviceFilter{Search: "dev_"}, []string{"dev_1"}},
		{"search percent is literal", store.DeviceFilter{Search: "dev%"}, sorted("dev%1", "dev%x")},
		{"search trailing percent", store.DeviceFilter{Search: "dev-1%"}, []string{"dev-1%"}},
		{"search trailing underscore", store.DeviceFilter{Search: "dev-1_"}, []string{"dev-1_a"}},
		{"search exact id", store.DeviceFilter{Search: "devX1"}, []string{"devX1"}},
		{"search no match", store.DeviceFilter{Search: "zzz"}, []string{}},
		{"search and fleet", store.DeviceFilter{Search: "dev-1", Fleet: "lab"}, []string{"dev-1_a"}},
		{"after", store.DeviceFilter{After: "dev-2"}, after("dev-2")},
		{"after and fleet", store.DeviceFilter{After: "dev-1", Fleet: "lab"}, sorted("dev-1_a", "dev_1", "other")},
		{"after and search", store.DeviceFilter{After: "dev-1", Search: "dev-1"}, sorted("dev-1%", "dev-10", "dev-1_a")},
		{"limit", store.DeviceFilter{Limit: 2}, all[:2]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ids(must(s.ListDevices(ctx, c.filter))(t))
			if !slices.Equal(got, c.want) {
				t.Errorf("ListDevices(%+v) = %q, want %q", c.filter, got, c.want)
			}
		})
	}

	t.Run("keyset pagination", func(t *testing.T) {
		var want []string
		for i := range 137 {
			id := fmt.Sprintf("page-%03d", (i*37)%137) // inserted out of order
			f := fleet
			if i%3 == 0 {
				f = "lab"
			}
			must(s.CreateDevice(ctx, store.Device{ID: id, Fleet: f, Profile: profile, Status: store.DevicePending}, nil))(t)
			want = append(want, id)
		}
		sort.Strings(want)
		for _, limit := range []int{1, 10, 50, 136, 137, 1000} {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > 200 {
					t.Fatalf("limit %d: pagination does not terminate", limit)
				}
				page := must(s.ListDevices(ctx, store.DeviceFilter{Search: "page-", After: after, Limit: limit}))(t)
				if len(page) > limit {
					t.Fatalf("limit %d: page of %d devices", limit, len(page))
				}
				if len(page) == 0 {
					break
				}
				got = append(got, ids(page)...)
				after = page[len(page)-1].ID
			}
			if !slices.Equal(got, want) {
				t.Errorf("limit %d: paged ids = %q, want each of the %d devices once in order", limit, got, len(want))
			}
		}
	})
}

// TestListDevicesCollation runs the id search on a PostgreSQL database whose
// default collation is not bytewise (ICU en-US, like the en_US.UTF-8 default
// of many PostgreSQL installs): a prefix is a prefix of the bytes, whatever
// the database's collation, and paging still yields every device once.
func TestListDevicesCollation(t *testing.T) {
	ctx := context.Background()
	s := open(t, icuPostgres(t), nil)
	must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(t)
	must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ed25519"}, Validity: time.Hour}, nil))(t)
	all := []string{"dev-1", "DEV-1", "Dev-10", "dev-10", "dev10", "dev1", "dev-2", "dev_1", "dev.1", "dév-1", "dev-1z"}
	for _, id := range all {
		must(s.CreateDevice(ctx, store.Device{ID: id, Fleet: fleet, Profile: profile, Status: store.DevicePending}, nil))(t)
	}
	sort.Strings(all)

	cases := []struct {
		search string
		want   []string
	}{
		{"dev-1", []string{"dev-1", "dev-10", "dev-1z"}},
		{"DEV", []string{"DEV-1"}},
		{"Dev-1", []string{"Dev-10"}},
		{"dev1", []string{"dev1", "dev10"}},
		{"dev_", []string{"dev_1"}},
		{"dev-1z", []string{"dev-1z"}},
		{"d", []string{"dev-1", "dev-10", "dev-1z", "dev-2", "dev.1", "dev1", "dev10", "dev_1", "dév-1"}},
	}
	for _, c := range cases {
		got := ids(must(s.ListDevices(ctx, store.DeviceFilter{Search: c.search}))(t))
		sort.Strings(got) // the order is the database's collation
		if !slices.Equal(got, c.want) {
			t.Errorf("Search %q = %q, want %q", c.search, got, c.want)
		}
	}

	var paged []string
	after := ""
	for range len(all) + 1 {
		page := must(s.ListDevices(ctx, store.DeviceFilter{After: after, Limit: 2}))(t)
		if len(page) == 0 {
			break
		}
		paged = append(paged, ids(page)...)
		after = page[len(page)-1].ID
	}
	sort.Strings(paged)
	if !slices.Equal(paged, all) {
		t.Errorf("paging yielded %q, want every device once: %q", paged, all)
	}
}

// icuPostgres returns a fresh PostgreSQL database whose default collation is
// ICU en-US. It skips when PostgreSQL is not configured or cannot do ICU.
func icuPostgres(t *testing.T) string {
	t.Helper()
	dsn := testdb.DSN(t, "postgres") // a fresh database to connect through
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "gatehouse_icu_" + hex.EncodeToString(b[:])
	if _, err := db.Exec("CREATE DATABASE " + name + " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"); err != nil {
		_ = db.Close()
		t.Skipf("cannot create an ICU-collated database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		_ = db.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func testTokenBatches(t *testing.T, backend string) {
	ctx := context.Background()
	s, clk := seeded(t, backend)
	expires := base.Add(7 * 24 * time.Hour)

	const n = 2500
	toks := make([]store.NewToken, n)
	for i := range toks {
		toks[i].Hash = fmt.Sprintf("hash-%04d", i)
		if i%500 == 7 {
			toks[i].DeviceID = fmt.Sprintf("fixed-%04d", i)
		}
	}
	b := must(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "big", Fleet: fleet, Profile: profile,
		ExpiresAt: expires, CreatedBy: "alice"}, toks, nil))(t)
	if b.Count != n || b.ID != "big" {
		t.Errorf("CreateTokenBatch = %+v, want count %d", b, n)
	}
	got := must(s.GetTokenBatch(ctx, "big"))(t)
	want := store.TokenBatch{ID: "big", Fleet: fleet, Profile: profile, Count: n, ExpiresAt: expires,
		CreatedBy: "alice", CreatedAt: base}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GetTokenBatch = %+v, want %+v", got, want)
	}
	// Every token of every chunk was written, with its fixed device id.
	for i := range toks {
		tok, err := s.GetBootstrapToken(ctx, toks[i].Hash)
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if tok.DeviceID != toks[i].DeviceID || tok.BatchID != "big" || tok.Fleet != fleet || tok.Profile != profile ||
			!tok.ExpiresAt.Equal(expires) || tok.UsedAt != nil || tok.UsedBy != "" || tok.BatchRevokedAt != nil {
			t.Fatalf("token %d = %+v", i, tok)
		}
	}

	// Use three tokens: the count follows.
	for i, h := range []string{"hash-0000", "hash-1234", "hash-2499"} {
		must(s.CompleteEnrollment(ctx, enrollment(h, fmt.Sprintf("used-%d", i), fmt.Sprintf("s-%d", i), base)))(t)
	}
	if got := must(s.GetTokenBatch(ctx, "big"))(t); got.Used != 3 {
		t.Errorf("GetTokenBatch.Used = %d, want 3", got.Used)
	}

	// Two more batches, later: the list is newest first.
	clk.Set(base.Add(time.Hour))
	batch(t, s, "middle", expires, "m-1", "m-2")
	clk.Set(base.Add(2 * time.Hour))
	batch(t, s, "newest", expires)
	must(s.CompleteEnrollment(ctx, enrollment("m-2", "used-m", "s-m", base)))(t)

	list := must(s.ListTokenBatches(ctx, 0))(t)
	type summary struct {
		ID          string
		Count, Used int
	}
	var sums []summary
	for _, b := range list {
		sums = append(sums, summary{b.ID, b.Count, b.Used})
	}
	wantSums := []summary{{"newest", 0, 0}, {"middle", 2, 1}, {"big", n, 3}}
	if !reflect.DeepEqual(sums, wantSums) {
		t.Errorf("ListTokenBatches = %+v, want %+v", sums, wantSums)
	}
	wantTime(t, "newest CreatedAt", list[0].CreatedAt, base.Add(2*time.Hour))
	if l := must(s.ListTokenBatches(ctx, 2))(t); len(l) != 2 || l[0].ID != "newest" || l[1].ID != "middle" {
		t.Errorf("ListTokenBatches(2) = %+v", l)
	}

	// A duplicate hash in a later chunk rolls back the whole batch.
	dup := make([]store.NewToken, 1500)
	for i := range dup {
		dup[i].Hash = fmt.Sprintf("dup-%04d", i)
	}
	dup[1400].Hash = "hash-0042" // already stored, in the second chunk
	_, err := s.CreateTokenBatch(ctx, store.TokenBatch{ID: "dup", Fleet: fleet, Profile: profile, ExpiresAt: expires}, dup, nil)
	wantCode(t, err, fault.AlreadyExists)
	wantCode(t, second(s.GetTokenBatch(ctx, "dup")), fault.NotFound)
	wantCode(t, second(s.GetBootstrapToken(ctx, "dup-0000")), fault.TokenInvalid)

	errCases := []struct {
		name string
		err  error
		code fault.Code
	}{
		{"unknown token", second(s.GetBootstrapToken(ctx, "no-such-hash")), fault.TokenInvalid},
		{"missing batch", second(s.GetTokenBatch(ctx, "nope")), fault.NotFound},
		{"duplicate batch id", second(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "big", Fleet: fleet, Profile: profile, ExpiresAt: expires}, nil, nil)), fault.AlreadyExists},
		{"missing fleet", second(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "x", Fleet: "nope", Profile: profile, ExpiresAt: expires}, nil, nil)), fault.Conflict},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, c.code) })
	}
}

func testCompleteEnrollment(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	must(s.CreateFleet(ctx, store.Fleet{Name: "lab"}, nil))(t)
	expires := base.Add(24 * time.Hour)
	batch(t, s, "b", expires, "ok", "again", "late", "edge", "taken", "pending", "foreign", "dup-serial")
	at := base.Add(time.Hour)

	// tokenUnused asserts the token was not consumed.
	tokenUnused := func(t *testing.T, hash string) {
		t.Helper()
		tok := must(s.GetBootstrapToken(ctx, hash))(t)
		if tok.UsedAt != nil || tok.UsedBy != "" {
			t.Errorf("token %s was consumed by a failed enrollment: used at %v by %q", hash, tok.UsedAt, tok.UsedBy)
		}
	}

	t.Run("success", func(t *testing.T) {
		e := enrollment("ok", "dev-ok", "serial-ok", at)
		d := must(s.CompleteEnrollment(ctx, e))(t)
		if d.ID != "dev-ok" || d.Status != store.DeviceActive || d.Fleet != fleet || d.Profile != profile || d.Labels["via"] != "token" {
			t.Errorf("CompleteEnrollment = %+v", d)
		}
		if got := must(s.GetDevice(ctx, "dev-ok"))(t); !reflect.DeepEqual(got, d) {
			t.Errorf("GetDevice = %+v, want %+v", got, d)
		}
		wantTime(t, "device CreatedAt", d.CreatedAt, at)
		c := must(s.GetCertificate(ctx, "serial-ok"))(t)
		wantC := e.Cert
		wantC.Status, wantC.CreatedAt = store.CertActive, at
		if !reflect.DeepEqual(c, wantC) {
			t.Errorf("GetCertificate = %+v, want %+v", c, wantC)
		}
		if cs := must(s.ListCertificates(ctx, "dev-ok"))(t); len(cs) != 1 || cs[0].Serial != "serial-ok" {
			t.Errorf("ListCertificates = %+v", cs)
		}
		tok := must(s.GetBootstrapToken(ctx, "ok"))(t)
		wantTimePtr(t, "token UsedAt", tok.UsedAt, at)
		if tok.UsedBy != "dev-ok" {
			t.Errorf("token UsedBy = %q", tok.UsedBy)
		}
	})

	t.Run("second use", func(t *testing.T) {
		_, err := s.CompleteEnrollment(ctx, enrollment("ok", "dev-other", "serial-other", at.Add(time.Minute)))
		wantCode(t, err, fault.TokenUsed)
		wantCode(t, second(s.GetDevice(ctx, "dev-other")), fault.NotFound)
		wantCode(t, second(s.GetCertificate(ctx, "serial-other")), fault.NotFound)
		if tok := must(s.GetBootstrapToken(ctx, "ok"))(t); tok.UsedBy != "dev-ok" {
			t.Errorf("token UsedBy changed to %q", tok.UsedBy)
		}
	})

	t.Run("expired", func(t *testing.T) {
		for _, c := range []struct {
			hash, dev string
			at        time.Time
		}{
			{"late", "dev-late", expires.Add(time.Millisecond)},
			{"edge", "dev-edge", expires}, // expiry is exclusive
			{"late", "dev-late", expires.Add(24 * time.Hour)},
		} {
			_, err := s.CompleteEnrollment(ctx, enrollment(c.hash, c.dev, "serial-"+c.dev, c.at))
			wantCode(t, err, fault.TokenExpired)
			tokenUnused(t, c.hash)
			wantCode(t, second(s.GetDevice(ctx, c.dev)), fault.NotFound)
		}
		// The store judges expiry by Enrollment.At, not its own clock.
		must(s.CompleteEnrollment(ctx, enrollment("edge", "dev-edge", "serial-edge", expires.Add(-time.Millisecond))))(t)
	})

	t.Run("unknown token", func(t *testing.T) {
		_, err := s.CompleteEnrollment(ctx, enrollment("nope", "dev-nope", "serial-nope", at))
		wantCode(t, err, fault.TokenInvalid)
		wantCode(t, second(s.GetDevice(ctx, "dev-nope")), fault.NotFound)
	})

	t.Run("device already active", func(t *testing.T) {
		_, err := s.CompleteEnrollment(ctx, enrollment("taken", "dev-ok", "serial-taken", at))
		wantCode(t, err, fault.AlreadyExists)
		tokenUnused(t, "taken")
		wantCode(t, second(s.GetCertificate(ctx, "serial-taken")), fault.NotFound)
		if cs := must(s.ListCertificates(ctx, "dev-ok"))(t); len(cs) != 1 {
			t.Errorf("dev-ok has %d certificates, want 1", len(cs))
		}
	})

	t.Run("pending device in another fleet", func(t *testing.T) {
		must(s.CreateDevice(ctx, store.Device{ID: "dev-lab", Fleet: "lab", Profile: profile, Status: store.DevicePending}, nil))(t)
		_, err := s.CompleteEnrollment(ctx, enrollment("foreign", "dev-lab", "serial-lab", at))
		wantCode(t, err, fault.AlreadyExists)
		tokenUnused(t, "foreign")
		if d := must(s.GetDevice(ctx, "dev-lab"))(t); d.Status != store.DevicePending {
			t.Errorf("dev-lab status = %s, want pending", d.Status)
		}
	})

	t.Run("certificate serial taken", func(t *testing.T) {
		_, err := s.CompleteEnrollment(ctx, enrollment("dup-serial", "dev-dup", "serial-ok", at))
		wantCode(t, err, fault.AlreadyExists)
		tokenUnused(t, "dup-serial")
		wantCode(t, second(s.GetDevice(ctx, "dev-dup")), fault.NotFound)
	})

	t.Run("pre-registered pending device", func(t *testing.T) {
		must(s.CreateProfile(ctx, store.Profile{Name: "gateway", KeyTypes: []string{"ed25519"}, Validity: time.Hour}, nil))(t)
		pre := must(s.CreateDevice(ctx, store.Device{ID: "dev-pre", Fleet: fleet, Profile: "gateway",
			Status: store.DevicePending, Labels: map[string]string{"site": "berlin"}}, nil))(t)
		// An enrollment without ClaimPending (a token not issued for this id)
		// must not take the pre-registered device.
		_, err := s.CompleteEnrollment(ctx, enrollment("pending", "dev-pre", "serial-pre", at))
		wantCode(t, err, fault.AlreadyExists)
		tokenUnused(t, "pending")
		claim := enrollment("pending", "dev-pre", "serial-pre", at)
		claim.ClaimPending = true
		d := must(s.CompleteEnrollment(ctx, claim))(t)
		if d.Status != store.DeviceActive || d.Profile != profile || d.Labels["site"] != "berlin" {
			t.Errorf("activated device = %+v", d)
		}
		got := must(s.GetDevice(ctx, "dev-pre"))(t)
		if !reflect.DeepEqual(got, d) {
			t.Errorf("GetDevice = %+v, want %+v", got, d)
		}
		wantTime(t, "CreatedAt", got.CreatedAt, pre.CreatedAt)
		wantTime(t, "UpdatedAt", got.UpdatedAt, at)
		if c := must(s.GetCertificate(ctx, "serial-pre"))(t); c.DeviceID != "dev-pre" || c.Status != store.CertActive {
			t.Errorf("certificate = %+v", c)
		}
	})

	if b := must(s.GetTokenBatch(ctx, "b"))(t); b.Used != 3 {
		t.Errorf("batch used = %d, want 3 (ok, edge, pending)", b.Used)
	}
}

// testEnrollmentRace: many enrollments with one token at once; exactly one wins.
func testEnrollmentRace(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "race", base.Add(time.Hour), "contested")

	const n = 100
	warm(t, s)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			e := enrollment("contested", fmt.Sprintf("racer-%03d", i), fmt.Sprintf("race-serial-%03d", i), base)
			_, errs[i] = s.CompleteEnrollment(ctx, e)
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	codes := map[fault.Code]int{}
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("racers %d and %d both enrolled with one token", winner, i)
		case err == nil:
			winner = i
		default:
			codes[fault.CodeOf(err)]++
			if fault.CodeOf(err) != fault.TokenUsed {
				t.Errorf("racer %d: %v (code %q), want %q", i, err, fault.CodeOf(err), fault.TokenUsed)
			}
		}
	}
	if winner < 0 {
		t.Fatalf("no racer enrolled; error codes: %v", codes)
	}
	if codes[fault.TokenUsed] != n-1 {
		t.Errorf("error codes = %v, want %d × %q", codes, n-1, fault.TokenUsed)
	}

	certs, devices := 0, 0
	for i := range n {
		id := fmt.Sprintf("racer-%03d", i)
		cs := must(s.ListCertificates(ctx, id))(t)
		certs += len(cs)
		if _, err := s.GetDevice(ctx, id); err == nil {
			devices++
		} else {
			wantCode(t, err, fault.NotFound)
		}
		if i == winner && (len(cs) != 1 || cs[0].Serial != fmt.Sprintf("race-serial-%03d", i)) {
			t.Errorf("winner %d certificates = %+v", i, cs)
		}
	}
	if certs != 1 || devices != 1 {
		t.Errorf("database holds %d certificates and %d devices for the racers, want 1 and 1", certs, devices)
	}
	tok := must(s.GetBootstrapToken(ctx, "contested"))(t)
	if want := fmt.Sprintf("racer-%03d", winner); tok.UsedBy != want {
		t.Errorf("token used by %q, want the winner %q", tok.UsedBy, want)
	}
	if b := must(s.GetTokenBatch(ctx, "race"))(t); b.Used != 1 {
		t.Errorf("batch used = %d, want 1", b.Used)
	}
}

// testSameDeviceRace: many enrollments of one device id at once, each with its
// own token; exactly one claims the identity and the others leave their
// tokens unused.
func testSameDeviceRace(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	const n = 30
	hashes := make([]string, 2*n)
	for i := range hashes {
		hashes[i] = fmt.Sprintf("tok-%03d", i)
	}
	batch(t, s, "same", base.Add(time.Hour), hashes...)
	must(s.CreateDevice(ctx, store.Device{ID: "pre", Fleet: fleet, Profile: profile, Status: store.DevicePending}, nil))(t)

	for round, id := range []string{"pre", "fresh"} {
		t.Run(id, func(t *testing.T) {
			warm(t, s)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					h := hashes[round*n+i]
					e := enrollment(h, id, fmt.Sprintf("%s-serial-%03d", id, i), base)
					e.ClaimPending = id == "pre"
					_, errs[i] = s.CompleteEnrollment(ctx, e)
				})
			}
			close(start)
			wg.Wait()

			winners := 0
			for i, err := range errs {
				h := hashes[round*n+i]
				tok := must(s.GetBootstrapToken(ctx, h))(t)
				if err == nil {
					winners++
					if tok.UsedBy != id {
						t.Errorf("winner %d: token used by %q", i, tok.UsedBy)
					}
					continue
				}
				if fault.CodeOf(err) != fault.AlreadyExists {
					t.Errorf("racer %d: %v (code %q), want %q", i, err, fault.CodeOf(err), fault.AlreadyExists)
				}
				if tok.UsedAt != nil {
					t.Errorf("racer %d failed but consumed its token", i)
				}
			}
			if winners != 1 {
				t.Errorf("%d racers enrolled device %s, want exactly 1", winners, id)
			}
			if cs := must(s.ListCertificates(ctx, id))(t); len(cs) != 1 {
				t.Errorf("device %s has %d certificates, want 1", id, len(cs))
			}
			if d := must(s.GetDevice(ctx, id))(t); d.Status != store.DeviceActive {
				t.Errorf("device %s status %s", id, d.Status)
			}
		})
	}
	if b := must(s.GetTokenBatch(ctx, "same"))(t); b.Used != 2 {
		t.Errorf("batch used = %d, want 2", b.Used)
	}
}

func testRecordRenewal(t *testing.T, backend string) {
	ctx := context.Background()
	s, clk := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1", "t2")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)
	must(s.CompleteEnrollment(ctx, enrollment("t2", "dev-2", "other-1", base)))(t)

	renewedAt := base.Add(20 * 24 * time.Hour)
	clk.Set(renewedAt)
	must(s.RecordRenewal(ctx, store.Renewal{DeviceID: "dev-1", OldSerial: "s1", Cert: certificate("dev-1", "s2", renewedAt)}))(t)

	old := must(s.GetCertificate(ctx, "s1"))(t)
	if old.Status != store.CertSuperseded || old.RevokedAt != nil {
		t.Errorf("old certificate = %+v, want superseded", old)
	}
	cur := must(s.GetCertificate(ctx, "s2"))(t)
	if cur.Status != store.CertActive || cur.DeviceID != "dev-1" || cur.Fingerprint != "fp-s2" {
		t.Errorf("new certificate = %+v", cur)
	}
	wantTime(t, "new CreatedAt", cur.CreatedAt, renewedAt)
	cs := must(s.ListCertificates(ctx, "dev-1"))(t)
	if len(cs) != 2 || cs[0].Serial != "s2" || cs[1].Serial != "s1" {
		t.Errorf("ListCertificates = %+v, want s2 then s1", cs)
	}

	errCases := []struct {
		name string
		r    store.Renewal
		code fault.Code
	}{
		{"from superseded serial", store.Renewal{DeviceID: "dev-1", OldSerial: "s1", Cert: certificate("dev-1", "s3", renewedAt)}, fault.CertInvalid},
		{"from unknown serial", store.Renewal{DeviceID: "dev-1", OldSerial: "nope", Cert: certificate("dev-1", "s3", renewedAt)}, fault.CertInvalid},
		{"from another device's serial", store.Renewal{DeviceID: "dev-1", OldSerial: "other-1", Cert: certificate("dev-1", "s3", renewedAt)}, fault.CertInvalid},
		{"unknown device", store.Renewal{DeviceID: "nope", OldSerial: "s2", Cert: certificate("nope", "s3", renewedAt)}, fault.NotFound},
		{"duplicate new serial", store.Renewal{DeviceID: "dev-1", OldSerial: "s2", Cert: certificate("dev-1", "other-1", renewedAt)}, fault.AlreadyExists},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, second(s.RecordRenewal(ctx, c.r)), c.code)
			wantCode(t, second(s.GetCertificate(ctx, "s3")), fault.NotFound)
			if c := must(s.GetCertificate(ctx, "s2"))(t); c.Status != store.CertActive {
				t.Errorf("s2 status = %s after refused renewal, want active (rolled back)", c.Status)
			}
			if c := must(s.GetCertificate(ctx, "other-1"))(t); c.Status != store.CertActive || c.DeviceID != "dev-2" {
				t.Errorf("other-1 = %+v after refused renewal", c)
			}
		})
	}

	t.Run("device suspended", func(t *testing.T) {
		d := must(s.GetDevice(ctx, "dev-1"))(t)
		d.Status = store.DeviceSuspended
		must(s.UpdateDevice(ctx, d, nil))(t)
		err := second(s.RecordRenewal(ctx, store.Renewal{DeviceID: "dev-1", OldSerial: "s2", Cert: certificate("dev-1", "s3", renewedAt)}))
		wantCode(t, err, fault.DeviceNotActive)
		wantCode(t, second(s.GetCertificate(ctx, "s3")), fault.NotFound)
		if c := must(s.GetCertificate(ctx, "s2"))(t); c.Status != store.CertActive {
			t.Errorf("s2 status = %s, want active", c.Status)
		}
	})
}

// testRenewalRace: concurrent renewals from one certificate; exactly one
// supersedes it, the others are refused and leave no certificate behind.
func testRenewalRace(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)

	const n = 30
	warm(t, s)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			at := base.Add(time.Duration(i+1) * time.Minute)
			errs[i] = second(s.RecordRenewal(ctx, store.Renewal{DeviceID: "dev-1", OldSerial: "s1",
				Cert: certificate("dev-1", fmt.Sprintf("renewed-%03d", i), at)}))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		if err == nil {
			ok++
		} else if fault.CodeOf(err) != fault.CertInvalid {
			t.Errorf("renewal %d: %v (code %q), want %q", i, err, fault.CodeOf(err), fault.CertInvalid)
		}
	}
	if ok != 1 {
		t.Errorf("%d renewals from s1 succeeded, want 1", ok)
	}
	active := 0
	cs := must(s.ListCertificates(ctx, "dev-1"))(t)
	for _, c := range cs {
		if c.Status == store.CertActive {
			active++
		}
	}
	if len(cs) != 2 || active != 1 {
		t.Errorf("dev-1 has %d certificates, %d active; want 2, 1 active", len(cs), active)
	}
}

func testRevokeCertificate(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := seeded(t, backend)
	batch(t, s, "b", base.Add(time.Hour), "t1")
	must(s.CompleteEnrollment(ctx, enrollment("t1", "dev-1", "s1", base)))(t)

	first := base.Add(time.Hour)
	noErr(t, s.RevokeCertificate(ctx, "s1", 1, first))
	c := must(s.GetCertificate(ctx, "s1"))(t)
	if c.Status != store.CertRevoked || c.RevocationReason != 1 {
		t.Errorf("revoked certificate = %+v", c)
	}
	wantTimePtr(t, "RevokedAt", c.RevokedAt, first)

	noErr(t, s.RevokeCertificate(ctx, "s1", 4, first.Add(time.Hour)))
	c = must(s.GetCertificate(ctx, "s1"))(t)
	if c.Status != store.CertRevoked || c.RevocationReason != 1 {
		t.Errorf("re-revoked certificate = %+v, want the first reason kept", c)
	}
	wantTimePtr(t, "RevokedAt after second revoke", c.RevokedAt, first)

	wantCode(t, s.RevokeCertificate(ctx, "nope", 1, first), fault.NotFound)
}

func testAdminTokens(t *testing.T, backend string) {
	ctx := context.Background()
	s, _ := newStore(t, backend)

	if n := must(s.CountAdminTokens(ctx))(t); n != 0 {
		t.Errorf("CountAdminTokens on a fresh database = %d", n)
	}
	a := must(s.CreateAdminToken(ctx, store.AdminToken{Name: "root", Hash: "h-admin", Role: "admin"}, nil))(t)
	if a.ID == "" || a.Name != "root" || a.Role != "admin" || a.RevokedAt != nil {
		t.Errorf("CreateAdminToken = %+v", a)
	}
	wantTime(t, "CreatedAt", a.CreatedAt, base)
	v := must(s.CreateAdminToken(ctx, store.AdminToken{ID: "fixed-id", Name: "dash", Hash: "h-viewer", Role: "viewer"}, nil))(t)
	if v.ID != "fixed-id" {
		t.Errorf("given ID not kept: %q", v.ID)
	}
	if got := must(s.GetAdminTokenByHash(ctx, "h-admin"))(t); !reflect.DeepEqual(got, a) {
		t.Errorf("GetAdminTokenByHash = %+v, want %+v", got, a)
	}
	if got := must(s.GetAdminTokenByHash(ctx, "h-viewer"))(t); got.ID != "fixed-id" || got.Role != "viewer" {
		t.Errorf("GetAdminTokenByHash(viewer) = %+v", got)
	}

	errCases := []struct {
		name string
		err  error
		code fault.Code
	}{
		{"duplicate hash", second(s.CreateAdminToken(ctx, store.AdminToken{Name: "x", Hash: "h-admin", Role: "operator"}, nil)), fault.AlreadyExists},
		{"duplicate id", second(s.CreateAdminToken(ctx, store.AdminToken{ID: "fixed-id", Name: "x", Hash: "h-new", Role: "operator"}, nil)), fault.AlreadyExists},
		{"invalid role", second(s.CreateAdminToken(ctx, store.AdminToken{Name: "x", Hash: "h-bad", Role: "superuser"}, nil)), fault.InvalidArgument},
		{"unknown hash", second(s.GetAdminTokenByHash(ctx, "nope")), fault.NotFound},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, c.code) })
	}
	if n := must(s.CountAdminTokens(ctx))(t); n != 2 {
		t.Errorf("CountAdminTokens = %d, want 2", n)
	}
}

func testAudit(t *testing.T, backend string) {
	ctx := context.Background()
	s, clk := newStore(t, backend)

	events := []store.AuditEvent{
		{At: base.Add(1 * time.Minute), Actor: "alice", Action: "fleet.create", ObjectType: "fleet", ObjectID: "factory"},
		{At: base.Add(3 * time.Minute), Actor: "bob", Action: "device.suspend", ObjectType: "device", ObjectID: "dev-1", Detail: "stolen"},
		{At: base.Add(2 * time.Minute), Actor: "alice", Action: "device.create", ObjectType: "device", ObjectID: "dev-1"},
		{At: base.Add(4 * time.Minute), Actor: "alice", Action: "device.create", ObjectType: "device", ObjectID: "dev-2"},
	}
	for _, e := range events {
		noErr(t, s.AppendAudit(ctx, e))
	}
	clk.Set(base.Add(5 * time.Minute))
	noErr(t, s.AppendAudit(ctx, store.AuditEvent{Actor: "system", Action: "token.expire", ObjectType: "batch", ObjectID: "b1"}))

	actions := func(es []store.AuditEvent) []string {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Actor + ":" + e.Action + ":" + e.ObjectID
		}
		return out
	}
	cases := []struct {
		name   string
		filter store.AuditFilter
		want   []string
	}{
		{"all newest first", store.AuditFilter{}, []string{"system:token.expire:b1", "alice:device.create:dev-2",
			"bob:device.suspend:dev-1", "alice:device.create:dev-1", "alice:fleet.create:factory"}},
		{"object type", store.AuditFilter{ObjectType: "device"}, []string{"alice:device.create:dev-2",
			"bob:device.suspend:dev-1", "alice:device.create:dev-1"}},
		{"object", store.AuditFilter{ObjectType: "device", ObjectID: "dev-1"}, []string{"bob:device.suspend:dev-1", "alice:device.create:dev-1"}},
		{"actor", store.AuditFilter{Actor: "alice"}, []string{"alice:device.create:dev-2", "alice:device.create:dev-1", "alice:fleet.create:factory"}},
		{"actor and type", store.AuditFilter{Actor: "alice", ObjectType: "fleet"}, []string{"alice:fleet.create:factory"}},
		{"limit", store.AuditFilter{Limit: 2}, []string{"system:token.expire:b1", "alice:device.create:dev-2"}},
		{"no match", store.AuditFilter{Actor: "mallory"}, []string{}},
		{"action", store.AuditFilter{Action: "device.create"}, []string{"alice:device.create:dev-2", "alice:device.create:dev-1"}},
		{"since inclusive", store.AuditFilter{Since: base.Add(3 * time.Minute)}, []string{"system:token.expire:b1",
			"alice:device.create:dev-2", "bob:device.suspend:dev-1"}},
		{"until exclusive", store.AuditFilter{Until: base.Add(2 * time.Minute)}, []string{"alice:fleet.create:factory"}},
		{"window and action", store.AuditFilter{Since: base.Add(2 * time.Minute), Until: base.Add(5 * time.Minute),
			Action: "device.create"}, []string{"alice:device.create:dev-2", "alice:device.create:dev-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := actions(must(s.ListAudit(ctx, c.filter))(t)); !slices.Equal(got, c.want) {
				t.Errorf("ListAudit(%+v) = %q, want %q", c.filter, got, c.want)
			}
		})
	}

	all := must(s.ListAudit(ctx, store.AuditFilter{}))(t)
	filled := all[0]
	if filled.ID == "" {
		t.Errorf("AppendAudit did not assign an ID")
	}
	wantTime(t, "defaulted At", filled.At, base.Add(5*time.Minute))
	if all[2].Detail != "stolen" {
		t.Errorf("detail = %q, want stolen", all[2].Detail)
	}
	seen := map[string]bool{}
	for _, e := range all {
		if seen[e.ID] {
			t.Errorf("duplicate audit id %s", e.ID)
		}
		seen[e.ID] = true
	}
}

// BenchmarkCompleteEnrollment measures one enrollment transaction on SQLite.
func BenchmarkCompleteEnrollment(b *testing.B) {
	ctx := context.Background()
	s, _ := seeded(b, "sqlite")
	toks := make([]store.NewToken, b.N)
	for i := range toks {
		toks[i].Hash = fmt.Sprintf("bench-%09d", i)
	}
	must(s.CreateTokenBatch(ctx, store.TokenBatch{ID: "bench", Fleet: fleet, Profile: profile,
		ExpiresAt: base.Add(time.Hour)}, toks, nil))(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench-dev-%09d", i)
		if _, err := s.CompleteEnrollment(ctx, enrollment(toks[i].Hash, id, id, base)); err != nil {
			b.Fatal(err)
		}
	}
}
