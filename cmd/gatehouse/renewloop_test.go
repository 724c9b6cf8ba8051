package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
)

// TestRenewLoopWait: the loop sleeps until the window opens plus jitter,
// never less than 0, with the jitter bounded by max-jitter and a quarter
// of the window; the window defaults to a third of the lifetime.
func TestRenewLoopWait(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(90 * time.Hour)}
	for _, tc := range []struct {
		name      string
		now       time.Time
		before    time.Duration
		maxJitter time.Duration
		// top: randN returns its largest value, else 0.
		top  bool
		want time.Duration
	}{
		{"default window, no jitter", t0, 0, 0, false, 60 * time.Hour},
		{"default window, largest jitter", t0, 0, 10 * time.Minute, true, 60*time.Hour + 10*time.Minute - 1},
		{"jitter capped by a quarter of the window", t0, 20 * time.Minute, time.Hour, true, 90*time.Hour - 20*time.Minute + 5*time.Minute - 1},
		{"window open", t0.Add(80 * time.Hour), 30 * time.Hour, 0, false, 0},
		{"expired", t0.Add(100 * time.Hour), 30 * time.Hour, time.Minute, true, time.Minute - 1},
		{"explicit window", t0.Add(time.Hour), time.Hour, 0, false, 88 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &renewLoop{before: tc.before, maxJitter: tc.maxJitter, now: func() time.Time { return tc.now },
				randN: func(n int64) int64 {
					if n <= 0 {
						t.Fatalf("randN(%d)", n)
					}
					if tc.top {
						return n - 1
					}
					return 0
				}}
			l.defaults()
			if got := l.wait(cert); got != tc.want {
				t.Fatalf("wait = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRenewLoopBackoffAndHook: failures are retried with doubling backoff
// (capped), a success resets it and runs the hook once with the files in
// its environment, a failing hook does not stop the loop, and the loop
// returns nil when its context ends.
func TestRenewLoopBackoffAndHook(t *testing.T) {
	dir := t.TempDir()
	certPath := filepath.Join(dir, "device.crt")
	key := testpki.Key(t, "P-256")
	now := time.Now()
	// A certificate whose window is open: the loop renews at once.
	if err := os.WriteFile(certPath, selfSignedPEM(t, key, now.Add(-time.Hour), now.Add(time.Minute)), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "hook.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sleeps []time.Duration
	calls := 0
	outcomes := []error{fault.New(fault.Unavailable, "down"), fault.New(fault.Unavailable, "down"),
		fault.New(fault.Unavailable, "down"), nil, errors.New("boom"), nil}
	l := &renewLoop{
		certPath: certPath, minBackoff: time.Second, maxBackoff: 3 * time.Second,
		postRenew: `echo "$GATEHOUSE_SERIAL $GATEHOUSE_CERT_FILE" >> ` + marker + `; exit 3`,
		randN:     func(int64) int64 { return 0 },
		sleep: func(ctx context.Context, d time.Duration) error {
			sleeps = append(sleeps, d)
			if calls == len(outcomes) {
				cancel()
			}
			return ctx.Err()
		},
		renew: func() (enrollResult, error) {
			err := outcomes[calls]
			calls++
			if err != nil {
				return enrollResult{}, err
			}
			return enrollResult{Serial: "s" + string(rune('0'+calls)), Files: map[string]string{"certificate": certPath}}, nil
		},
	}
	if err := l.run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	// wait(0), backoff 1s, wait, 2s, wait, 3s (capped), wait, [ok], wait, 1s (reset), wait, [ok], wait (cancelled)
	want := []time.Duration{0, time.Second, 0, 2 * time.Second, 0, 3 * time.Second, 0, 0, time.Second, 0, 0}
	if len(sleeps) != len(want) {
		t.Fatalf("sleeps %v, want %v", sleeps, want)
	}
	for i := range want {
		if sleeps[i] != want[i] {
			t.Fatalf("sleeps %v, want %v", sleeps, want)
		}
	}
	got, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(got)), "\n"); len(lines) != 2 ||
		lines[0] != "s4 "+certPath || lines[1] != "s6 "+certPath {
		t.Fatalf("hook ran with %q, want once per renewal with serial and file", got)
	}
}

func selfSignedPEM(t *testing.T, key crypto.Signer, notBefore, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
