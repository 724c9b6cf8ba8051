package revoke_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// ordered records the follow-ups in the order they run; fail names those
// that fail.
type ordered struct {
	mu   sync.Mutex
	ran  []string
	fail map[string]bool
}

func (o *ordered) step(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ran = append(o.ran, name)
	if o.fail[name] {
		return errors.New(name + " is down")
	}
	return nil
}

func (o *ordered) Sync(context.Context) (int, error)          { return 0, o.step("sync") }
func (o *ordered) Publish(context.Context) error              { return o.step("crl") }
func (o *ordered) Kick(context.Context, string, string) error { return o.step("kick") }
func (o *ordered) Cancel(context.Context, string) error       { return o.step("cancel") }

// TestFollowUpsAfterCommit: the decision core is refreshed first (that is
// what the next broker request sees), then the kick, then the CRL; every
// follow-up runs even when an earlier one fails; a committed change whose
// follow-ups lag is reported as *revoke.Lagging (warnings), never as a
// failed change.
func TestFollowUpsAfterCommit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     []string
		wantWarn []string
	}{
		{"all well", nil, nil},
		{"crl down", []string{"crl"}, []string{"CRL"}},
		{"core and kick down", []string{"sync", "kick"}, []string{"decision core", "session kick"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, devs := fixture(t, testdb.SQLite(t), 1)
			o := &ordered{fail: map[string]bool{}}
			for _, f := range tc.fail {
				o.fail[f] = true
			}
			s, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: o, CRL: o, Sessions: o})
			if err != nil {
				t.Fatal(err)
			}
			serials, err := s.RevokeDevice(context.Background(), devs[0], revoke.Request{Actor: "ops", Reason: "keyCompromise"})
			if !slices.Equal(o.ran, []string{"sync", "kick", "crl"}) {
				t.Errorf("follow-ups ran as %v", o.ran)
			}
			warnings, rest := revoke.Warnings(err)
			if rest != nil || len(serials) != 1 {
				t.Fatalf("RevokeDevice: serials %v, err %v", serials, err)
			}
			if len(warnings) != len(tc.wantWarn) {
				t.Fatalf("warnings %q, want %d", warnings, len(tc.wantWarn))
			}
			for i, w := range tc.wantWarn {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q lacks %q", warnings[i], w)
				}
			}
			if err != nil && fault.CodeOf(err) != fault.Unavailable {
				t.Errorf("code %v", fault.CodeOf(err))
			}
			d, err := st.GetDevice(context.Background(), devs[0])
			if err != nil || d.Status != store.DeviceRevoked {
				t.Fatalf("device after revoke: %+v %v", d, err)
			}
		})
	}
	// A change that fails is not a warning.
	if w, err := revoke.Warnings(fault.New(fault.NotFound, "no device")); w != nil || !fault.Is(err, fault.NotFound) {
		t.Fatalf("Warnings of a failure: %v %v", w, err)
	}
}

// TestRevokeDoesNotWaitForeverForTheCRL: a CRL generation slower than
// CRLWait does not hold the revoke call: it returns, committed, with a
// warning that the CRL lags.
func TestRevokeDoesNotWaitForeverForTheCRL(t *testing.T) {
	st, devs := fixture(t, testdb.SQLite(t), 1)
	e := &effects{}
	s, err := revoke.New(revoke.Config{Store: st, Jobs: st, Core: e, CRL: slowCRL{e, time.Minute}, Sessions: e, CRLWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_, err = s.RevokeDevice(context.Background(), devs[0], revoke.Request{Actor: "ops"})
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("revoke waited %v for the CRL", d)
	}
	warnings, err := revoke.Warnings(err)
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "CRL") {
		t.Fatalf("warnings %q, err %v", warnings, err)
	}
}
