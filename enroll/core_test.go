package enroll_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

// recordingCore is a decision core that checks, when refreshed, that the
// device it is told about is already committed, and can fail.
type recordingCore struct {
	t     *testing.T
	st    *store.Store
	fail  bool
	calls int
	saw   []string // current serial of each device at refresh time
	want  string
}

func (c *recordingCore) Sync(ctx context.Context) (int, error) {
	c.calls++
	if c.want != "" {
		d, _, err := c.st.DevicesChangedSince(ctx, time.Time{})
		if err != nil {
			c.t.Fatal(err)
		}
		for _, dev := range d {
			if dev.ID == c.want && dev.Cert != nil {
				c.saw = append(c.saw, dev.Cert.Serial)
			}
		}
	}
	if c.fail {
		return 0, errors.New("database went away")
	}
	return 1, nil
}

// TestEnrollRefreshesCore: enrollment and renewal refresh the decision core
// once each, after their commit (the core sees the new certificate), and a
// refresh that fails is logged without failing the committed call.
func TestEnrollRefreshesCore(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, t.TempDir(), nil)
	core := &recordingCore{t: t, st: e.st}
	var logs bytes.Buffer
	svc, err := enroll.New(enroll.Config{Catalog: e.st, Tokens: e.st, Records: e.st, Claims: e.st, Audit: audit.New(e.st, nil),
		Issuer: e.ca, Core: core, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// A profile whose renewal window is open at once.
	if _, err := e.st.CreateProfile(ctx, store.Profile{Name: "eager", KeyTypes: []string{"P-256"}, Validity: time.Hour, RenewWindow: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := svc.CreateBatch(ctx, enroll.BatchRequest{Fleet: "default", Profile: "eager", Count: 2, TTL: time.Hour,
		DeviceIDs: []string{"cam-1", "cam-2"}})
	if err != nil {
		t.Fatal(err)
	}
	key := testpki.Key(t, "P-256")
	core.want = "cam-1"
	res, err := svc.Enroll(ctx, enroll.Request{Token: b.Tokens[0].Token, CSR: []byte(testpki.CSRPEM(t, key))})
	if err != nil {
		t.Fatal(err)
	}
	if core.calls != 1 || len(core.saw) != 1 || core.saw[0] != res.Serial {
		t.Fatalf("after enrollment: %d refreshes seeing serials %v, want 1 seeing %s", core.calls, core.saw, res.Serial)
	}
	ch, err := svc.Challenge(ctx, res.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := enroll.NewChallengeCSR(key, ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	ren, err := svc.Renew(ctx, enroll.RenewRequest{Current: res.Certificate,
		CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})})
	if err != nil {
		t.Fatal(err)
	}
	if core.calls != 2 || len(core.saw) != 2 || core.saw[1] != ren.Serial {
		t.Fatalf("after renewal: %d refreshes seeing serials %v, want 2, the last seeing %s", core.calls, core.saw, ren.Serial)
	}

	// The core cannot refresh: the enrollment stands, the failure is logged.
	core.fail, core.want = true, ""
	if _, err := svc.Enroll(ctx, enroll.Request{Token: b.Tokens[1].Token, CSR: []byte(testpki.CSRPEM(t, testpki.Key(t, "P-256")))}); err != nil {
		t.Fatalf("enrollment failed because the core did not refresh: %v", err)
	}
	if d, err := e.st.GetDevice(ctx, "cam-2"); err != nil || d.Status != store.DeviceActive {
		t.Fatalf("cam-2 after enrollment: %+v %v", d, err)
	}
	if !strings.Contains(logs.String(), "enrollment committed, but the decision core did not refresh") {
		t.Errorf("failed refresh not logged:\n%s", logs.String())
	}
}
