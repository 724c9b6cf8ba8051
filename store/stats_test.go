package store_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

func TestStats(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			t.Run("CountDevices", func(t *testing.T) { testCountDevices(t, backend) })
			t.Run("ExpiringCertificates", func(t *testing.T) { testExpiringCertificates(t, backend) })
			t.Run("ListDevicesByLabel", func(t *testing.T) { testListDevicesByLabel(t, backend) })
		})
	}
}

func testCountDevices(t *testing.T, backend string) {
	s, _ := seeded(t, backend)
	ctx := context.Background()
	if got := must(s.CountDevices(ctx))(t); len(got) != 0 {
		t.Fatalf("empty store: %v", got)
	}
	must(s.CreateFleet(ctx, store.Fleet{Name: "lab"}, nil))(t)
	devs := []struct {
		id, fleet string
		status    store.DeviceStatus
	}{
		{"a", fleet, store.DeviceActive}, {"b", fleet, store.DeviceActive}, {"c", fleet, store.DeviceSuspended},
		{"d", "lab", store.DeviceActive}, {"e", "lab", store.DeviceRevoked}, {"f", "lab", store.DevicePending},
		{"g", "lab", store.DevicePending},
	}
	for _, d := range devs {
		must(s.CreateDevice(ctx, store.Device{ID: d.id, Fleet: d.fleet, Profile: profile, Status: d.status}, nil))(t)
	}
	want := []store.DeviceCount{
		{Fleet: fleet, Status: store.DeviceActive, Count: 2}, {Fleet: fleet, Status: store.DeviceSuspended, Count: 1},
		{Fleet: "lab", Status: store.DeviceActive, Count: 1}, {Fleet: "lab", Status: store.DevicePending, Count: 2},
		{Fleet: "lab", Status: store.DeviceRevoked, Count: 1},
	}
	if got := must(s.CountDevices(ctx))(t); !slices.Equal(got, want) {
		t.Fatalf("CountDevices = %v, want %v", got, want)
	}
}

func testListDevicesByLabel(t *testing.T, backend string) {
	s, _ := seeded(t, backend)
	ctx := context.Background()
	for id, labels := range map[string]map[string]string{
		"a": {"room": "lab", "floor": "2"},
		"b": {"room": "Lab"},
		"c": {"room": "lab-2", "xroom": "lab", `"room`: "lab"},
		"d": {"note": `say "room":"lab"`, "room": ""},
		"e": {"room": "<lab>", "ünï": "çødé"},
		"f": nil,
	} {
		must(s.CreateDevice(ctx, store.Device{ID: id, Fleet: fleet, Profile: profile, Status: store.DeviceActive, Labels: labels}, nil))(t)
	}
	cases := []struct {
		key, value string
		want       []string
	}{
		{"room", "lab", []string{"a"}},   // not Lab, lab-2, xroom=lab, "room=lab, nor a quoted value
		{"room", "Lab", []string{"b"}},   // case-sensitive on both backends
		{"room", "la", []string{}},       // whole values only
		{"roo", "lab", []string{}},       // whole keys only
		{"room", "", []string{"d"}},      // an empty value is a value
		{"room", "<lab>", []string{"e"}}, // HTML characters as Go escapes them
		{"ünï", "çødé", []string{"e"}},
		{"floor", "2", []string{"a"}},
		{"nope", "x", []string{}},
	}
	for _, c := range cases {
		got := ids(must(s.ListDevices(ctx, store.DeviceFilter{LabelKey: c.key, LabelValue: c.value}))(t))
		if !slices.Equal(got, c.want) {
			t.Errorf("label %s=%s: %q, want %q", c.key, c.value, got, c.want)
		}
	}
	// Combined with the other filters and paging.
	got := ids(must(s.ListDevices(ctx, store.DeviceFilter{LabelKey: "room", LabelValue: "lab", Search: "a", After: ""}))(t))
	if !slices.Equal(got, []string{"a"}) {
		t.Errorf("label and search: %q", got)
	}
	if got := ids(must(s.ListDevices(ctx, store.DeviceFilter{LabelKey: "room", LabelValue: "lab", After: "a"}))(t)); len(got) != 0 {
		t.Errorf("label after a: %q", got)
	}
}

func testExpiringCertificates(t *testing.T, backend string) {
	s, _ := seeded(t, backend)
	ctx := context.Background()
	batch(t, s, "b1", base.Add(time.Hour), "h1", "h2", "h3")
	// Certificates valid 30 days from their enrollment time.
	must(s.CompleteEnrollment(ctx, enrollment("h1", "d1", "s1", base)))(t)
	must(s.CompleteEnrollment(ctx, enrollment("h2", "d2", "s2", base.Add(-10*24*time.Hour))))(t)
	must(s.CompleteEnrollment(ctx, enrollment("h3", "d3", "s3", base.Add(-20*24*time.Hour))))(t)
	noErr(t, s.RevokeCertificate(ctx, "s3", 1, base))
	serials := func(cs []store.Certificate) []string {
		out := []string{}
		for _, c := range cs {
			out = append(out, c.Serial)
		}
		return out
	}
	cases := []struct {
		name   string
		before time.Time
		limit  int
		want   []string
	}{
		{"none yet", base.Add(19 * 24 * time.Hour), 0, []string{}},
		{"one", base.Add(21 * 24 * time.Hour), 0, []string{"s2"}},
		{"soonest first, revoked left out", base.Add(31 * 24 * time.Hour), 0, []string{"s2", "s1"}},
		{"limit", base.Add(31 * 24 * time.Hour), 1, []string{"s2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := serials(must(s.ExpiringCertificates(ctx, c.before, c.limit))(t))
			if !slices.Equal(got, c.want) {
				t.Errorf("ExpiringCertificates = %v, want %v", got, c.want)
			}
		})
	}
}

// BenchmarkDashboard measures the dashboard's queries over 100k devices,
// each with a certificate, on every backend.
func BenchmarkDashboard(b *testing.B) {
	const n = 100_000
	seed := map[string][]string{
		"sqlite": {
			`INSERT INTO devices (id, fleet, profile, status, labels, created_at, updated_at)
			 WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)
			 SELECT printf('dev-%06d', x), 'factory', 'sensor',
			        CASE x % 10 WHEN 0 THEN 'suspended' WHEN 1 THEN 'revoked' ELSE 'active' END, '{}', 0, 0 FROM c`,
			`INSERT INTO certificates (serial, fingerprint, device_id, not_before, not_after, status, pem, created_at)
			 WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)
			 SELECT printf('sn-%06d', x), printf('fp-%06d', x), printf('dev-%06d', x), 0, ? + x * 60000, 'active', 'x', 0 FROM c`,
		},
		"postgres": {
			`INSERT INTO devices (id, fleet, profile, status, labels, created_at, updated_at)
			 SELECT 'dev-' || lpad(x::text, 6, '0'), 'factory', 'sensor',
			        CASE x % 10 WHEN 0 THEN 'suspended' WHEN 1 THEN 'revoked' ELSE 'active' END, '{}', 0, 0
			 FROM generate_series(1, $1::int) AS x`,
			`INSERT INTO certificates (serial, fingerprint, device_id, not_before, not_after, status, pem, created_at)
			 SELECT 'sn-' || lpad(x::text, 6, '0'), 'fp-' || x, 'dev-' || lpad(x::text, 6, '0'), 0, $2::bigint + x::bigint * 60000, 'active', 'x', 0
			 FROM generate_series(1, $1::int) AS x`,
		},
	}
	for _, backend := range testdb.All() {
		b.Run(backend, func(b *testing.B) {
			dsn := testdb.DSN(b, backend)
			s := open(b, dsn, nil)
			ctx := context.Background()
			must(s.CreateFleet(ctx, store.Fleet{Name: fleet}, nil))(b)
			must(s.CreateProfile(ctx, store.Profile{Name: profile, KeyTypes: []string{"ecdsa-p256"}, Validity: time.Hour}, nil))(b)
			driver := map[string]string{"sqlite": "sqlite", "postgres": "pgx"}[backend]
			db, err := sql.Open(driver, dsn)
			noErr(b, err)
			defer db.Close()
			_, err = db.ExecContext(ctx, seed[backend][0], n)
			noErr(b, err)
			_, err = db.ExecContext(ctx, seed[backend][1], n, base.UnixMilli())
			noErr(b, err)
			if backend == "postgres" {
				_, err = db.ExecContext(ctx, "ANALYZE")
				noErr(b, err)
			}

			b.Run("CountDevices", func(b *testing.B) {
				for b.Loop() {
					counts := must(s.CountDevices(ctx))(b)
					if len(counts) != 3 {
						b.Fatalf("counts %v", counts)
					}
				}
			})
			b.Run("ExpiringCertificates", func(b *testing.B) {
				for b.Loop() {
					cs := must(s.ExpiringCertificates(ctx, base.Add(7*24*time.Hour), 50))(b)
					if len(cs) != 50 || cs[0].Serial != "sn-000001" {
						b.Fatalf("expiring: %d", len(cs))
					}
				}
			})
			b.Run("ListDevicesByLabel", func(b *testing.B) {
				// No device has the label: the worst case scans every row.
				for b.Loop() {
					ds := must(s.ListDevices(ctx, store.DeviceFilter{LabelKey: "room", LabelValue: "lab", Limit: 50}))(b)
					if len(ds) != 0 {
						b.Fatalf("devices: %d", len(ds))
					}
				}
			})
			b.Run("ListDevicesFiltered", func(b *testing.B) {
				for b.Loop() {
					ds := must(s.ListDevices(ctx, store.DeviceFilter{Status: store.DeviceSuspended, Search: "dev-09", Limit: 50}))(b)
					if len(ds) != 50 {
						b.Fatalf("devices: %d", len(ds))
					}
				}
			})
		})
	}
}
