package authzsync_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestSync runs the syncer against a real database on both backends: a
// full load, then only what changed, with roles read from the certificate.
func TestSync(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			st, err := store.New(ctx, store.Config{DSN: testdb.DSN(t, backend)})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			clock := time.Now()
			st.SetClock(func() time.Time { return clock })
			dir := filepath.Join(t.TempDir(), "ca")
			pass := []byte("a long enough passphrase")
			if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
				t.Fatal(err)
			}
			theCA, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.CreateFleet(ctx, store.Fleet{Name: "plant"}, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := st.CreateProfile(ctx, store.Profile{Name: "p", KeyTypes: []string{"P-256"}, Validity: time.Hour}, nil); err != nil {
				t.Fatal(err)
			}
			tokens := []store.NewToken{{Hash: "h1"}, {Hash: "h2"}}
			if _, err := st.CreateTokenBatch(ctx, store.TokenBatch{ID: "b", Fleet: "plant", Profile: "p", ExpiresAt: clock.Add(time.Hour)}, tokens, nil); err != nil {
				t.Fatal(err)
			}
			enroll := func(hash, id string, roles []string) {
				iss, err := theCA.Issue(ctx, ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))),
					Fleet: "plant", DeviceID: id, Validity: time.Hour, Roles: roles})
				if err != nil {
					t.Fatal(err)
				}
				fp := sha256.Sum256(iss.Leaf.Raw)
				_, err = st.CompleteEnrollment(ctx, store.Enrollment{TokenHash: hash, At: clock,
					Device: store.Device{ID: id, Fleet: "plant", Profile: "p"},
					Cert: store.Certificate{Serial: ca.SerialHex(iss.Leaf.SerialNumber), Fingerprint: hex.EncodeToString(fp[:]),
						DeviceID: id, NotBefore: iss.Leaf.NotBefore, NotAfter: iss.Leaf.NotAfter, PEM: string(ca.EncodePEM(iss.Leaf))}})
				if err != nil {
					t.Fatal(err)
				}
			}
			enroll("h1", "sensor", []string{"telemetry"})
			enroll("h2", "ctl", []string{"command", "telemetry"})
			if _, err := st.CreateDevice(ctx, store.Device{ID: "pending", Fleet: "plant", Profile: "p", Status: store.DevicePending}, nil); err != nil {
				t.Fatal(err)
			}

			core := authz.New(authz.Config{})
			p, err := policy.Compile(ctx, policy.Default())
			if err != nil {
				t.Fatal(err)
			}
			core.SetPolicy(p, 1)
			s, err := authzsync.New(authzsync.Config{Source: st, Roles: theCA, Sink: core})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := s.Sync(ctx); err != nil || n != 3 {
				t.Fatalf("full load: %d %v", n, err)
			}
			if d, ok := core.Device("ctl"); !ok || !d.Active || len(d.Roles) != 2 || d.Roles[0] != "command" || d.CertSerial == "" {
				t.Fatalf("ctl state: %+v %v", d, ok)
			}
			if d, ok := core.Device("pending"); !ok || d.Active || !d.CertNotAfter.IsZero() {
				t.Fatalf("pending state: %+v", d)
			}
			allow := func(id, topic string) bool {
				d, err := core.Authorize(ctx, authz.Request{Action: authz.Publish, Identity: id, ClientID: id, Topic: topic})
				if err != nil {
					t.Fatal(err)
				}
				return d.Allow
			}
			if !allow("ctl", "fleets/plant/devices/sensor/cmd/reboot") || allow("sensor", "fleets/plant/devices/ctl/cmd/reboot") {
				t.Fatal("roles from certificates are not applied")
			}
			// Nothing changed: an incremental sync reads nothing new... except
			// the overlap window, which may re-read recent rows; it never loses any.
			clock = clock.Add(10 * time.Second)
			if _, err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			// Suspend the sensor directly in the database (as another replica would).
			dev, _ := st.GetDevice(ctx, "sensor")
			dev.Status = store.DeviceSuspended
			clock = clock.Add(time.Second)
			if _, err := st.UpdateDevice(ctx, dev, nil); err != nil {
				t.Fatal(err)
			}
			if n, err := s.Sync(ctx); err != nil || n != 1 {
				t.Fatalf("incremental sync: %d %v", n, err)
			}
			if allow("sensor", "fleets/plant/devices/sensor/telemetry/t") {
				t.Fatal("suspension did not reach the core")
			}
			if !allow("ctl", "fleets/plant/devices/ctl/telemetry/t") {
				t.Fatal("unchanged device lost access")
			}
		})
	}
}
