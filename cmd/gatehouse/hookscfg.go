package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/hooks"
)

// hooksSecretFileName is where init stores the generated hook secret.
const hooksSecretFileName = "hooks-secret"

// hookAuth is how the hook listener authenticates brokers.
type hookAuth struct {
	secret string
	// source names where the secret came from (a key or a path), for the
	// start-up log; the secret itself is never logged.
	source      string
	clientCerts bool
	open        bool
}

// hooksAuth resolves the hook listener's authentication: hooks.secret,
// else hooks.secret_file, else the secret init generated into the data
// directory; mutual TLS (hooks.client_ca) counts too. With none of these,
// serving needs hooks.allow_unauthenticated: hooks are closed by default.
func hooksAuth(v *viper.Viper) (hookAuth, error) {
	a := hookAuth{clientCerts: v.GetString(keyHooksClientCA) != "", open: v.GetBool(keyHooksOpen)}
	defaultPath := filepath.Join(dataDir(v), hooksSecretFileName)
	switch {
	case v.GetString(keyHooksSecret) != "":
		a.secret, a.source = v.GetString(keyHooksSecret), keyHooksSecret
	case v.GetString(keyHooksSecretF) != "":
		path := v.GetString(keyHooksSecretF)
		s, err := readHookSecret(path)
		if err != nil {
			return hookAuth{}, fault.Wrap(err, fault.InvalidArgument, "%s: %v", keyHooksSecretF, err)
		}
		a.secret, a.source = s, path
	default:
		s, err := readHookSecret(defaultPath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return hookAuth{}, fault.Wrap(err, fault.InvalidArgument, "hook secret: %v", err)
		}
		a.secret, a.source = s, defaultPath
	}
	if a.secret != "" && len(a.secret) < hooks.MinSecretLen {
		return hookAuth{}, fault.New(fault.InvalidArgument, "the hook secret from %s is shorter than %d bytes", a.source, hooks.MinSecretLen)
	}
	if a.secret == "" && !a.clientCerts && !a.open {
		// A data directory made before init generated hook secrets.
		return hookAuth{}, fault.New(fault.NotFound, "hooks are closed by default, and nothing authenticates brokers: "+
			"%s is missing. Run `gatehouse init --data-dir %s --if-missing` to generate it (printed once), "+
			"or set %s, %s or %s (mutual TLS); %s: true serves hooks to anyone who reaches %s",
			defaultPath, dataDir(v), keyHooksSecret, keyHooksSecretF, keyHooksClientCA, keyHooksOpen, keyHooksAddr)
	}
	if a.secret == "" {
		a.source = ""
	}
	return a, nil
}

// logHookAuth says at start how brokers are authenticated.
func logHookAuth(log *slog.Logger, v *viper.Viper, a hookAuth) {
	if a.open {
		log.Warn("hooks.allow_unauthenticated is set: hook requests without the secret or a client certificate are served; "+
			"anyone who reaches the hook listener can ask for decisions", "addr", v.GetString(keyHooksAddr))
		return
	}
	log.Info("hook requests must authenticate", "secret_from", a.source, "client_certificates", a.clientCerts)
}

// readHookSecret reads a secret file: one line, trailing newline allowed.
func readHookSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// ensureHookSecret generates the data directory's hook secret unless one is
// configured or already there, and prints it once as `hooks-secret: <hex>`.
func ensureHookSecret(v *viper.Viper, out io.Writer) error {
	if v.GetString(keyHooksSecret) != "" || v.GetString(keyHooksSecretF) != "" {
		fmt.Fprintf(out, "hooks use the configured secret (%s or %s); none generated\n", keyHooksSecret, keyHooksSecretF)
		return nil
	}
	path := filepath.Join(dataDir(v), hooksSecretFileName)
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hook secret: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	secret := hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write hook secret: %w", err)
	}
	if _, err := f.Write([]byte(secret + "\n")); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write hook secret: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write hook secret: %w", err)
	}
	fmt.Fprintf(out, "generated the broker hook secret into %s (mode 0600); brokers send it in the X-Gatehouse-Hook-Secret header or as the basic-auth password:\n", path)
	fmt.Fprintf(out, "hooks-secret: %s\n", secret)
	return nil
}
