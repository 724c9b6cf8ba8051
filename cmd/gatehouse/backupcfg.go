package main

import (
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// secretKeys are the config keys a backup never carries: with them next to
// the encrypted keys, the backup would hold the keys in clear (the CA
// passphrase, the token PIN) or the credentials to the broker side.
var secretKeys = []string{keyPassphrase, keyKMSPin, keyHooksSecret, keyKickRabbitPass, keyKickEMQXKey,
	keyKickEMQXSecret, keyKickWebhookSecr}

// urlKeys are config keys holding URLs or DSNs whose password is removed.
var urlKeys = []string{keyDatabase, keyKickRabbitURL}

// dsnPassword matches a password in a libpq keyword/value DSN.
var dsnPassword = regexp.MustCompile(`(?i)(^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// redactedConfig writes the config file at path into dir with every
// secret removed, and returns the copy's path and the keys it removed. The
// copy is written from the parsed settings (comments are lost) in the
// file's own format.
func redactedConfig(path, dir string) (string, []string, error) {
	in := viper.New()
	in.SetConfigFile(path)
	if err := in.ReadInConfig(); err != nil {
		return "", nil, fault.Wrap(err, fault.InvalidArgument, "cannot read config file %s: %v", path, err)
	}
	settings := in.AllSettings()
	var removed []string
	for _, k := range secretKeys {
		if in.IsSet(k) && deleteKey(settings, k) {
			removed = append(removed, k)
		}
	}
	for _, k := range urlKeys {
		if s, ok := in.Get(k).(string); ok && s != "" {
			if clean := withoutPassword(s); clean != s {
				setKey(settings, k, clean)
				removed = append(removed, k+" (password)")
			}
		}
	}
	out := viper.New()
	if err := out.MergeConfigMap(settings); err != nil {
		return "", nil, err
	}
	dst := filepath.Join(dir, filepath.Base(path))
	if err := out.WriteConfigAs(dst); err != nil {
		return "", nil, fault.Wrap(err, fault.InvalidArgument, "cannot write the redacted config: %v", err)
	}
	slices.Sort(removed)
	return dst, removed, nil
}

// withoutPassword removes the password from a URL's userinfo or a libpq
// keyword/value DSN.
func withoutPassword(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.User(u.User.Username())
			return u.String()
		}
		return s
	}
	return strings.TrimSpace(dsnPassword.ReplaceAllString(s, "$1"))
}

// deleteKey removes dotted key k from nested settings; it reports whether
// it was there.
func deleteKey(settings map[string]any, k string) bool {
	parts := strings.Split(k, ".")
	m := settings
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return false
		}
		m = next
	}
	_, ok := m[parts[len(parts)-1]]
	delete(m, parts[len(parts)-1])
	return ok
}

// setKey sets dotted key k in nested settings, which hold it already.
func setKey(settings map[string]any, k string, v any) {
	parts := strings.Split(k, ".")
	m := settings
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}
