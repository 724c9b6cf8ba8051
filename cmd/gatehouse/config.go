package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// Config keys. Each is settable in the config file (YAML, dotted keys as
// nesting), as GATEHOUSE_<KEY with . → _> in the environment, and where a
// flag exists, as a flag. Precedence: flag > env > file > default.
const (
	keyDataDir        = "data_dir"
	keyDatabase       = "database.dsn"
	keyAPIAddr        = "api.addr"
	keyPublicURL      = "api.public_url"
	keyAPITLSCert     = "api.tls_cert"
	keyAPITLSKey      = "api.tls_key"
	keyHooksAddr      = "hooks.addr"
	keyDiagAddr       = "diag.addr"
	keyHooksSecret    = "hooks.secret"
	keyHooksSecretF   = "hooks.secret_file"
	keyHooksOpen      = "hooks.allow_unauthenticated"
	keyHooksTLSCert   = "hooks.tls_cert"
	keyHooksTLSKey    = "hooks.tls_key"
	keyHooksClientCA  = "hooks.client_ca"
	keyHooksMosqMode  = "hooks.mosquitto.mode"
	keyHooksRabbitCL  = "hooks.rabbitmq.cert_login"
	keyHooksVMQ22     = "hooks.vernemq.per_filter_suback"
	keyDecisionLog    = "authz.decision_log_every"
	keyMaxStaleness   = "authz.max_staleness"
	keyPolicyEval     = "policy.eval_timeout"
	keyPassphrase     = "ca.passphrase"
	keyPassphraseFile = "ca.passphrase_file"
	keyRoleOIDs       = "ca.role_oids"
	keyRootOffline    = "ca.root_offline"
	keyKMS            = "ca.kms"
	keyKMSPin         = "ca.kms_pin"
	keyKMSPinFile     = "ca.kms_pin_file"
	keyLogLevel       = "log.level"
	keyCRLFile        = "crl.file"
	keyCRLReload      = "crl.reload_command"
	keyCRLValidity    = "crl.validity"
	keyLogFormat      = "log.format"

	// Live-session kick targets (kickcfg.go); each is off while its URL is empty.
	keyKickRabbitURL   = "kick.rabbitmq.url"
	keyKickRabbitUser  = "kick.rabbitmq.user"
	keyKickRabbitPass  = "kick.rabbitmq.password"
	keyKickEMQXURL     = "kick.emqx.url"
	keyKickEMQXKey     = "kick.emqx.api_key"
	keyKickEMQXSecret  = "kick.emqx.api_secret"
	keyKickWebhookURL  = "kick.webhook.url"
	keyKickWebhookSecr = "kick.webhook.secret"
	// The gatehouse-mosquitto plugin's kicks go over its event stream.
	keyKickMosqEnabled = "kick.mosquitto.enabled"
	keyKickMosqName    = "kick.mosquitto.name"
)

var defaults = map[string]any{
	keyDataDir:        "./data",
	keyDatabase:       "",
	keyAPIAddr:        "127.0.0.1:8080",
	keyPublicURL:      "",
	keyAPITLSCert:     "",
	keyAPITLSKey:      "",
	keyHooksAddr:      "127.0.0.1:8081",
	keyDiagAddr:       "127.0.0.1:9090",
	keyHooksSecret:    "",
	keyHooksSecretF:   "",
	keyHooksOpen:      false,
	keyHooksTLSCert:   "",
	keyHooksTLSKey:    "",
	keyHooksClientCA:  "",
	keyHooksMosqMode:  "status",
	keyHooksRabbitCL:  false,
	keyHooksVMQ22:     false,
	keyDecisionLog:    0,
	keyMaxStaleness:   "30s",
	keyPolicyEval:     "100ms",
	keyPassphrase:     "",
	keyPassphraseFile: "",
	keyRoleOIDs:       map[string]string{},
	keyRootOffline:    false,
	keyKMS:            "",
	keyKMSPin:         "",
	keyKMSPinFile:     "",
	keyLogLevel:       "info",
	keyCRLFile:        "",
	keyCRLReload:      "",
	keyCRLValidity:    "24h",
	keyLogFormat:      "text",

	keyKickRabbitURL:   "",
	keyKickRabbitUser:  "",
	keyKickRabbitPass:  "",
	keyKickEMQXURL:     "",
	keyKickEMQXKey:     "",
	keyKickEMQXSecret:  "",
	keyKickWebhookURL:  "",
	keyKickWebhookSecr: "",
	keyKickMosqEnabled: false,
	keyKickMosqName:    "mosquitto",
}

// passphraseFileName is where init stores a generated CA passphrase.
const passphraseFileName = "ca-passphrase"

// loadConfig builds a viper instance from defaults, an optional config file,
// GATEHOUSE_* variables and the command's flags. Every key gets SetDefault
// and BindEnv, because viper's Unmarshal ignores env vars for unknown keys.
func loadConfig(cmd *cobra.Command) (*viper.Viper, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
		if err := v.BindEnv(k, "GATEHOUSE_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))); err != nil {
			return nil, err
		}
	}
	flagKeys := map[string]string{
		"data-dir": keyDataDir, "database": keyDatabase, "api-addr": keyAPIAddr, "public-url": keyPublicURL,
		"hooks-addr": keyHooksAddr, "tls-cert": keyAPITLSCert, "tls-key": keyAPITLSKey, "diag-addr": keyDiagAddr, "ca-passphrase-file": keyPassphraseFile,
	}
	for flag, key := range flagKeys {
		if f := cmd.Flags().Lookup(flag); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, err
			}
		}
	}
	if f := cmd.Flags().Lookup("config"); f != nil && f.Value.String() != "" {
		v.SetConfigFile(f.Value.String())
		if err := v.ReadInConfig(); err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "cannot read config file %s: %v", f.Value.String(), err)
		}
	}
	for _, k := range []string{keyAPIAddr, keyHooksAddr, keyDiagAddr} {
		if _, _, err := net.SplitHostPort(v.GetString(k)); err != nil {
			return nil, fault.New(fault.InvalidArgument, "%s: %q is not host:port", k, v.GetString(k))
		}
	}
	return v, nil
}

func addServerFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("config", "", "config file (YAML)")
	f.String("data-dir", "./data", "data directory (CA, SQLite database)")
	f.String("database", "", "database DSN: postgres://… or an SQLite path (default <data-dir>/gatehouse.db)")
	f.String("ca-passphrase-file", "", "file holding the CA key passphrase (or set GATEHOUSE_CA_PASSPHRASE)")
}

func dataDir(v *viper.Viper) string { return v.GetString(keyDataDir) }

func caDir(v *viper.Viper) string { return filepath.Join(dataDir(v), "ca") }

func databaseDSN(v *viper.Viper) string {
	if dsn := v.GetString(keyDatabase); dsn != "" {
		return dsn
	}
	return filepath.Join(dataDir(v), "gatehouse.db")
}

// publicURL is the base URL devices and brokers reach the API at; it goes
// into certificates (CRL, OCSP), so it must not change casually.
func publicURL(v *viper.Viper) string {
	if u := v.GetString(keyPublicURL); u != "" {
		return strings.TrimRight(u, "/")
	}
	scheme := "http://"
	if v.GetString(keyAPITLSCert) != "" {
		scheme = "https://"
	}
	return scheme + v.GetString(keyAPIAddr)
}

// hooksTLS returns the hook listener's TLS config, or nil for plain HTTP.
// With hooks.client_ca the broker must present a certificate issued by that
// CA (mutual TLS): the alternative to a shared secret.
func hooksTLS(v *viper.Viper) (*tls.Config, error) {
	certFile, keyFile, caFile := v.GetString(keyHooksTLSCert), v.GetString(keyHooksTLSKey), v.GetString(keyHooksClientCA)
	if certFile == "" && keyFile == "" {
		if caFile != "" {
			return nil, fault.New(fault.InvalidArgument, "hooks.client_ca needs hooks.tls_cert and hooks.tls_key")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "hooks TLS certificate: %v", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := readPool(caFile)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "hooks client CA: %v", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// apiTLS returns the API listener's TLS config, or nil for plain HTTP. A
// client certificate is optional at the handshake (token enrollment has
// none) and is not verified there: it is either a Gatehouse certificate
// (renewal, EST simplereenroll) or a vendor IDevID (EST simpleenroll), and
// the handshake can check only one kind. Each consumer verifies it in the
// application: renewal and its challenge against the Gatehouse CA
// (enroll.Service via ca.VerifyLeaf), IDevID enrollment against the
// registered vendors (idevid.Match). What the handshake still proves is
// possession of the certificate's key. Advertising no acceptable CAs lets
// clients that filter by them (Go's) send a vendor certificate; and an
// expired IDevID is answered idevid_invalid instead of a TLS alert.
func apiTLS(v *viper.Viper) (*tls.Config, error) {
	certFile, keyFile := v.GetString(keyAPITLSCert), v.GetString(keyAPITLSKey)
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "api TLS certificate: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert}, nil
}

// readPassphrase finds the CA passphrase: GATEHOUSE_CA_PASSPHRASE (or the
// config file), else --ca-passphrase-file, else the file init generated.
func readPassphrase(v *viper.Viper) ([]byte, error) {
	if p := v.GetString(keyPassphrase); p != "" {
		return []byte(p), nil
	}
	path := v.GetString(keyPassphraseFile)
	if path == "" {
		path = filepath.Join(dataDir(v), passphraseFileName)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fault.New(fault.InvalidArgument,
				"no CA passphrase: set GATEHOUSE_CA_PASSPHRASE or --ca-passphrase-file")
		}
	}
	return readPassphraseFile("CA", path)
}

// readPassphraseFile reads a passphrase file (one line) of the given kind.
func readPassphraseFile(kind, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s passphrase: %w", kind, err)
	}
	p := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(p) < ca.MinPassphraseLen {
		return nil, fault.New(fault.InvalidArgument, "%s passphrase in %s is shorter than %d bytes", kind, path, ca.MinPassphraseLen)
	}
	return p, nil
}

// generatePassphrase writes a random passphrase to path with mode 0600.
func generatePassphrase(path string) ([]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	p := []byte(base64.RawURLEncoding.EncodeToString(b[:]))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write CA passphrase: %w", err)
	}
	if _, err := f.Write(append(p, '\n')); err != nil {
		_ = f.Close()
		return nil, err
	}
	return p, f.Close()
}

// kmsConfig reads ca.kms (a PKCS#11 URI naming the issuing key) and its
// PIN from ca.kms_pin or ca.kms_pin_file. A PIN inside the URI is refused:
// the URI sits in config files and messages.
func kmsConfig(v *viper.Viper) (uri, pin string, err error) {
	if uri = v.GetString(keyKMS); uri == "" {
		return "", "", nil
	}
	if !strings.HasPrefix(uri, "pkcs11:") || strings.Contains(uri, "pin-value") || strings.Contains(uri, "pin-source") {
		return "", "", fault.New(fault.InvalidArgument, "%s must be a pkcs11: URI without its PIN (set %s or %s)", keyKMS, keyKMSPin, keyKMSPinFile)
	}
	if pin = v.GetString(keyKMSPin); pin == "" && v.GetString(keyKMSPinFile) != "" {
		b, err := os.ReadFile(v.GetString(keyKMSPinFile))
		if err != nil {
			return "", "", fault.Wrap(err, fault.InvalidArgument, "%s: %v", keyKMSPinFile, err)
		}
		pin = strings.TrimRight(string(b), "\r\n")
	}
	if pin == "" {
		return "", "", fault.New(fault.InvalidArgument, "%s needs the token PIN in %s or %s", keyKMS, keyKMSPin, keyKMSPinFile)
	}
	return uri, pin, nil
}

// caConfig is the CA's configuration as serve and restore load it.
func caConfig(v *viper.Viper, pass []byte, st ca.CertStore) (ca.Config, error) {
	uri, pin, err := kmsConfig(v)
	return ca.Config{Dir: caDir(v), Passphrase: pass, Store: st, RoleOIDs: roleOIDs(v), KMS: uri, KMSPin: pin}, err
}

// policyEvalTimeout reads policy.eval_timeout: the bound of one evaluation
// of a device's grants (and of a simulation). There is no "unbounded":
// a policy that runs away must be cut off.
func policyEvalTimeout(v *viper.Viper) (time.Duration, error) {
	s := v.GetString(keyPolicyEval)
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Millisecond || d > 10*time.Second {
		return 0, fault.New(fault.InvalidArgument, "%s: %q is not a duration between 1ms and 10s", keyPolicyEval, s)
	}
	return d, nil
}

// roleOIDs reads ca.role_oids; an empty map means the built-in defaults.
func roleOIDs(v *viper.Viper) map[string]string {
	m := v.GetStringMapString(keyRoleOIDs)
	if len(m) == 0 {
		return nil
	}
	return m
}

// redactDSN hides a password in a database URL before it is printed.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}
