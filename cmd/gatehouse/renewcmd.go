package main

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
)

func newRenewCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "renew",
		Short: "Renew this device's certificate with its current one",
		Long: "Renews device.crt in --dir. Over https the current certificate authenticates the TLS " +
			"connection, which proves possession of its key, and --rotate-key may replace the key. " +
			"Without --rotate-key renew also asks for a single-use challenge and signs it into the CSR " +
			"with the current key (PKCS#9 challengePassword): the proof over plain http, where an old " +
			"CSR could otherwise be replayed. An expired certificate (a profile with renew_after_expiry) " +
			"renews by that challenge only. --loop keeps renewing at the start of every renewal window. " +
			"--est re-enrolls over EST instead (simplereenroll over mutual TLS, always with a new key).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if must(f.GetBool("loop")) || must(f.GetBool("daemon")) {
				return runRenewLoop(cmd)
			}
			renew, err := renewFunc(f)
			var res enrollResult
			if err == nil {
				res, err = renew()
			}
			if must(f.GetBool("json")) {
				if err != nil {
					writeJSON(cmd.OutOrStdout(), jsonError(err))
					return cliError{error: err, silent: true}
				}
				writeJSON(cmd.OutOrStdout(), res)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "renewed %s, serial %s, valid until %s\n", res.DeviceID, res.Serial,
				res.NotAfter.Format("2006-01-02 15:04:05Z07:00"))
			return nil
		},
	}
	f := cmd.Flags()
	f.String("server", "", "Gatehouse API base URL")
	f.String("dir", ".", "directory holding device.key and device.crt")
	f.String("ca-file", "", "CA bundle to trust for an https server")
	f.Bool("rotate-key", false, "generate a new key (needs an https server: the TLS handshake proves the old key)")
	f.String("key-type", "P-256", "key type for --rotate-key")
	f.Bool("json", false, "print the result (or the error) as JSON")
	f.Bool("loop", false, "keep running: renew at the start of each renewal window (plus jitter) until SIGTERM")
	f.Bool("daemon", false, "same as --loop")
	f.String("post-renew", "", "with --loop: command run with sh -c after each renewal; "+
		"GATEHOUSE_CERT_FILE, GATEHOUSE_KEY_FILE, GATEHOUSE_CHAIN_FILE, GATEHOUSE_DEVICE_ID, GATEHOUSE_SERIAL name the result")
	f.Duration("renew-before", 0, "with --loop: renew this long before expiry (the profile's renew_window); 0 is a third of the certificate's lifetime")
	f.Duration("max-jitter", defaultMaxJitter, "with --loop: cap of the random delay added to each renewal (at most a quarter of the window)")
	f.String("est", "", "re-enroll over EST (RFC 7030 simplereenroll, mutual TLS, always a new key) instead of --server; needs --ca-file")
	f.SetNormalizeFunc(caFileAlias)
	return cmd
}

// renewFunc is one renewal with the command's flags: over the API
// (--server) or over EST (--est).
func renewFunc(f *pflag.FlagSet) (func() (enrollResult, error), error) {
	server, dir, caFile := must(f.GetString("server")), must(f.GetString("dir")), must(f.GetString("ca-file"))
	rotate, keyType, est := must(f.GetBool("rotate-key")), must(f.GetString("key-type")), must(f.GetString("est"))
	if est != "" {
		if server != "" {
			return nil, fault.New(fault.InvalidArgument, "give --server or --est, not both")
		}
		if !f.Changed("key-type") {
			keyType = "" // the current key's type
		}
		return func() (enrollResult, error) { return runRenewEST(est, dir, caFile, keyType) }, nil
	}
	return func() (enrollResult, error) { return runRenew(server, dir, caFile, rotate, keyType) }, nil
}

// runRenewLoop runs renewLoop with the command's flags until SIGTERM or
// SIGINT, logging to stderr.
func runRenewLoop(cmd *cobra.Command) error {
	f := cmd.Flags()
	renew, err := renewFunc(f)
	if err != nil {
		return err
	}
	dir := must(f.GetString("dir"))
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	l := &renewLoop{
		renew:     renew,
		certPath:  filepath.Join(dir, deviceCertFile),
		before:    must(f.GetDuration("renew-before")),
		maxJitter: must(f.GetDuration("max-jitter")),
		postRenew: must(f.GetString("post-renew")),
		log:       slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
	}
	return l.run(ctx)
}

func runRenew(server, dir, caFile string, rotate bool, keyType string) (enrollResult, error) {
	keyPath, certPath := filepath.Join(dir, deviceKeyFile), filepath.Join(dir, deviceCertFile)
	// A --rotate-key run cut between the certificate and the key's rename
	// left the new certificate with device.key.new: finish it first.
	if err := finishKeySwap(certPath, keyPath); err != nil {
		return enrollResult{}, err
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return enrollResult{}, fault.Wrap(err, fault.InvalidArgument, "cannot load %s and %s: %v", certPath, keyPath, err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return enrollResult{}, err
	}
	// Send the intermediate with the leaf, as TLS clients should.
	if chainPEM, err := os.ReadFile(filepath.Join(dir, deviceChainFile)); err == nil {
		if block, _ := pem.Decode(chainPEM); block != nil && block.Type == "CERTIFICATE" {
			pair.Certificate = append(pair.Certificate, block.Bytes)
		}
	}
	c, err := newClient(server, "", caFile)
	if err != nil {
		return enrollResult{}, err
	}
	// An expired certificate renews (if its profile allows) by the
	// challenge alone: the server never takes it as proof over mutual TLS,
	// and servers that verify client certificates at the handshake (a
	// proxy in front, say) refuse it there.
	expired := pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter)
	if expired && rotate {
		return enrollResult{}, fault.New(fault.InvalidArgument, "an expired certificate renews only with its own key: drop --rotate-key")
	}
	mtls := strings.HasPrefix(c.base, "https://") && !expired
	if mtls {
		c.withClientCert(pair)
	} else if rotate {
		return enrollResult{}, fault.New(fault.InvalidArgument, "--rotate-key needs an https server")
	}
	key := pair.PrivateKey.(crypto.Signer)
	if rotate {
		if key, err = generateKey(keyType); err != nil {
			return enrollResult{}, err
		}
	}
	var csrDER []byte
	if rotate {
		// Only mutual TLS can prove the old key when the CSR names a new one.
		csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	} else {
		csrDER, err = challengeCSR(c, key, certPEM)
	}
	if err != nil {
		return enrollResult{}, err
	}
	req := apitypes.RenewRequest{Certificate: string(certPEM),
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))}
	body, err := c.do("POST", "/api/v1/renew", "", req)
	if err != nil {
		return enrollResult{}, err
	}
	var res apitypes.EnrollResponse
	if err := json.Unmarshal(body, &res); err != nil || res.Certificate == "" {
		return enrollResult{}, fault.New(fault.Unavailable, "server sent an unreadable renewal response")
	}
	files := map[string]string{"key": keyPath, "certificate": certPath, "chain": filepath.Join(dir, deviceChainFile)}
	if rotate {
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return enrollResult{}, err
		}
		// New key first: the old certificate still works with the old key
		// until the new certificate lands; a crash after it is finished by
		// the next run (finishKeySwap).
		if err := writeFileAtomic(keyPath+".new", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
			return enrollResult{}, err
		}
	}
	if err := writeFileAtomic(certPath, []byte(res.Certificate), 0o644); err != nil {
		return enrollResult{}, err
	}
	if rotate {
		if err := os.Rename(keyPath+".new", keyPath); err != nil {
			return enrollResult{}, err
		}
	}
	if err := writeFileAtomic(files["chain"], []byte(res.Chain), 0o644); err != nil {
		return enrollResult{}, err
	}
	return enrollResult{OK: true, Files: files, DeviceID: res.DeviceID, Identity: res.Identity, Serial: res.Serial,
		NotAfter: jsonTime{res.NotAfter}}, nil
}

// challengeCSR asks for a renewal challenge for certPEM and signs it into a
// CSR with key. The proof of possession without mutual TLS is a fresh
// server nonce signed by the current key. It is sent over https too, where
// the handshake proves the key already: a TLS-terminating proxy in front
// of Gatehouse would leave the handshake's proof behind.
func challengeCSR(c *client, key crypto.Signer, certPEM []byte) ([]byte, error) {
	body, err := c.do("POST", "/api/v1/renew/challenge", "", apitypes.RenewChallengeRequest{Certificate: string(certPEM)})
	if err != nil {
		return nil, err
	}
	var ch apitypes.RenewChallengeResponse
	if err := json.Unmarshal(body, &ch); err != nil || ch.Nonce == "" {
		return nil, fault.New(fault.Unavailable, "server sent an unreadable renewal challenge")
	}
	return enroll.NewChallengeCSR(key, ch.Nonce)
}
