package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// TestHooksAuthConfig: the hook secret comes from hooks.secret, else
// hooks.secret_file, else the data dir's hooks-secret; with none of them
// and no mutual TLS, serve must not start unless hooks are opened
// explicitly. Errors never show a secret.
func TestHooksAuthConfig(t *testing.T) {
	const fromEnv, fromFile, fromDir = "env-secret-0123456789", "file-secret-0123456789", "dir-secret-0123456789"
	cases := []struct {
		name       string
		env        map[string]string
		dirSecret  bool
		wantSecret string
		wantCode   fault.Code
		wantErr    string
	}{
		{"data dir file", nil, true, fromDir, "", ""},
		{"env wins over the files", map[string]string{"GATEHOUSE_HOOKS_SECRET": fromEnv, "GATEHOUSE_HOOKS_SECRET_FILE": "FILE"}, true, fromEnv, "", ""},
		{"secret file wins over the data dir", map[string]string{"GATEHOUSE_HOOKS_SECRET_FILE": "FILE"}, true, fromFile, "", ""},
		{"missing secret file", map[string]string{"GATEHOUSE_HOOKS_SECRET_FILE": "MISSING"}, true, "", fault.InvalidArgument, "hooks.secret_file"},
		{"short secret", map[string]string{"GATEHOUSE_HOOKS_SECRET": "tiny-s3cret"}, false, "", fault.InvalidArgument, "shorter than 16"},
		{"nothing", nil, false, "", fault.NotFound, "--if-missing"},
		{"mutual TLS", map[string]string{"GATEHOUSE_HOOKS_CLIENT_CA": "ca.pem"}, false, "", "", ""},
		{"opened explicitly", map[string]string{"GATEHOUSE_HOOKS_ALLOW_UNAUTHENTICATED": "true"}, false, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("GATEHOUSE_DATA_DIR", dir)
			for _, k := range []string{"GATEHOUSE_HOOKS_SECRET", "GATEHOUSE_HOOKS_SECRET_FILE", "GATEHOUSE_HOOKS_CLIENT_CA", "GATEHOUSE_HOOKS_ALLOW_UNAUTHENTICATED"} {
				t.Setenv(k, "")
			}
			file := filepath.Join(dir, "other-secret")
			if err := os.WriteFile(file, []byte(fromFile+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.dirSecret {
				if err := os.WriteFile(filepath.Join(dir, hooksSecretFileName), []byte(fromDir+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range tc.env {
				v = strings.NewReplacer("FILE", file, "MISSING", filepath.Join(dir, "nope")).Replace(v)
				t.Setenv(k, v)
			}
			v, err := loadConfig(newServeCmd())
			if err != nil {
				t.Fatal(err)
			}
			a, err := hooksAuth(v)
			if tc.wantCode != "" {
				if fault.CodeOf(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %s with %q", err, tc.wantCode, tc.wantErr)
				}
				for _, s := range []string{fromEnv, fromFile, fromDir, "tiny-s3cret"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("the error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.secret != tc.wantSecret {
				t.Errorf("secret %q, want %q", a.secret, tc.wantSecret)
			}
		})
	}
}
