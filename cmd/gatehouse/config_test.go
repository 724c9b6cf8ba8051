package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse-iot/gatehouse/fault"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(file, []byte("api:\n  addr: 127.0.0.1:7001\nhooks:\n  addr: 127.0.0.1:7002\ndiag:\n  addr: 127.0.0.1:7003\ndatabase:\n  dsn: postgres://file/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   map[string]string
		flags []string
		key   string
		want  string
	}{
		{"default", nil, nil, keyAPIAddr, "127.0.0.1:8080"},
		{"file", nil, []string{"--config", file}, keyAPIAddr, "127.0.0.1:7001"},
		{"env beats file", map[string]string{"GATEHOUSE_API_ADDR": "127.0.0.1:7101"}, []string{"--config", file}, keyAPIAddr, "127.0.0.1:7101"},
		{"flag beats env", map[string]string{"GATEHOUSE_API_ADDR": "127.0.0.1:7101"}, []string{"--config", file, "--api-addr", "127.0.0.1:7201"}, keyAPIAddr, "127.0.0.1:7201"},
		{"nested key from env", map[string]string{"GATEHOUSE_DATABASE_DSN": "postgres://env/db"}, []string{"--config", file}, keyDatabase, "postgres://env/db"},
		{"nested key from file", nil, []string{"--config", file}, keyDatabase, "postgres://file/db"},
		{"hooks flag", nil, []string{"--hooks-addr", "127.0.0.1:7301"}, keyHooksAddr, "127.0.0.1:7301"},
		{"diag env", map[string]string{"GATEHOUSE_DIAG_ADDR": "127.0.0.1:7401"}, nil, keyDiagAddr, "127.0.0.1:7401"},
		{"data dir env", map[string]string{"GATEHOUSE_DATA_DIR": "/srv/gh"}, nil, keyDataDir, "/srv/gh"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cmd := newServeCmd()
			if err := cmd.ParseFlags(tc.flags); err != nil {
				t.Fatal(err)
			}
			v, err := loadConfig(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.GetString(tc.key); got != tc.want {
				t.Fatalf("%s = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		flags []string
	}{
		{"missing config file", nil, []string{"--config", "/nonexistent/gatehouse.yaml"}},
		{"bad listen address", map[string]string{"GATEHOUSE_HOOKS_ADDR": "not-an-address"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cmd := newServeCmd()
			if err := cmd.ParseFlags(tc.flags); err != nil {
				t.Fatal(err)
			}
			if _, err := loadConfig(cmd); fault.CodeOf(err) != fault.InvalidArgument {
				t.Fatalf("err = %v, want invalid_argument", err)
			}
		})
	}
}

func TestPassphraseSources(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "pass")
	if err := os.WriteFile(pf, []byte("from-the-file-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   string
		flags []string
		want  string
		code  fault.Code
	}{
		{"env", "from-the-environment", []string{"--data-dir", dir}, "from-the-environment", ""},
		{"file flag, newline trimmed", "", []string{"--data-dir", dir, "--ca-passphrase-file", pf}, "from-the-file-123", ""},
		{"env beats file", "from-the-environment", []string{"--ca-passphrase-file", pf}, "from-the-environment", ""},
		{"none", "", []string{"--data-dir", dir}, "", fault.InvalidArgument},
		{"too short", "", []string{"--ca-passphrase-file", short}, "", fault.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GATEHOUSE_CA_PASSPHRASE", tc.env)
			cmd := newServeCmd()
			if err := cmd.ParseFlags(tc.flags); err != nil {
				t.Fatal(err)
			}
			v, err := loadConfig(cmd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readPassphrase(v)
			if tc.code != "" {
				if fault.CodeOf(err) != tc.code {
					t.Fatalf("err = %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("passphrase %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
