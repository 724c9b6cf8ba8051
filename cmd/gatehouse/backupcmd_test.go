package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func TestRestoreFloor(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	big := int64(math.MaxInt64 / 4)
	for _, tc := range []struct {
		name     string
		base     int64
		backupAt time.Time
		want     int64
		err      bool
	}{
		{"wall clock above a small number", 7, now.Add(-time.Hour), now.UnixMilli(), false},
		{"large number: gap and elapsed time", big, now.Add(-time.Second), big + crlRestoreGap + 1000, false},
		{"backup from the future: no elapsed time", big, now.Add(time.Hour), big + crlRestoreGap, false},
		{"later restore of the same backup goes higher", big, now.Add(-2 * time.Second), big + crlRestoreGap + 2000, false},
		{"tampered number overflows", math.MaxInt64 - 5, now, 0, true},
		{"beyond half the range", math.MaxInt64/2 + 1, now, 0, true},
		{"elapsed time overflows", math.MaxInt64/2 - crlRestoreGap, time.Unix(-1<<40, 0), 0, true},
		{"negative number", -1, now, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := restoreFloor(tc.base, tc.backupAt, now)
			if tc.err {
				if !fault.Is(err, fault.InvalidArgument) {
					t.Fatalf("got %d, %v; want invalid_argument", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestRedactedConfig: the config copy a backup holds keeps every setting
// but the secrets, in the file's own format, and names what it removed.
func TestRedactedConfig(t *testing.T) {
	for _, tc := range []struct {
		name, file, body string
		removed          []string
		kept             []string
	}{
		{"yaml", "gatehouse.yaml", "data_dir: /var/lib/gh\nca:\n  passphrase: s3cret-pass\n  kms_pin: s3cret-pin\n  kms: pkcs11:token=x\n" +
			"hooks:\n  secret: s3cret-hook\ndatabase:\n  dsn: postgres://gh:s3cret-db@127.0.0.1/gh\n" +
			"kick:\n  rabbitmq:\n    url: http://admin:s3cret-rmq@127.0.0.1:15672\n    password: s3cret-rmq2\n  webhook:\n    secret: s3cret-wh\n",
			[]string{"ca.kms_pin", "ca.passphrase", "database.dsn (password)", "hooks.secret", "kick.rabbitmq.password", "kick.rabbitmq.url (password)", "kick.webhook.secret"},
			[]string{"/var/lib/gh", "pkcs11:token=x", "postgres://gh@127.0.0.1/gh", "http://admin@127.0.0.1:15672"}},
		{"json keyword DSN", "gatehouse.json", `{"database": {"dsn": "host=127.0.0.1 user=gh password='s3cret x' dbname=gh"}, "log": {"level": "debug"}}`,
			[]string{"database.dsn (password)"}, []string{"user=gh", "dbname=gh", "debug"}},
		{"nothing secret", "gatehouse.yaml", "data_dir: /var/lib/gh\ndatabase:\n  dsn: postgres://gh@127.0.0.1/gh\n",
			nil, []string{"/var/lib/gh", "postgres://gh@127.0.0.1/gh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(src, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			out, removed, err := redactedConfig(src, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, tc.removed) {
				t.Errorf("removed %q, want %q", removed, tc.removed)
			}
			b, err := os.ReadFile(out)
			if err != nil || filepath.Base(out) != tc.file {
				t.Fatalf("copy %s: %v", out, err)
			}
			if strings.Contains(string(b), "s3cret") {
				t.Errorf("the copy holds a secret:\n%s", b)
			}
			for _, k := range tc.kept {
				if !strings.Contains(string(b), k) {
					t.Errorf("the copy lost %q:\n%s", k, b)
				}
			}
		})
	}
}
