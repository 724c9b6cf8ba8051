package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// Files the enroll command writes into --out.
const (
	deviceKeyFile   = "device.key"
	deviceCertFile  = "device.crt"
	deviceChainFile = "ca-chain.crt"
)

func newEnrollCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Enroll this device: make a key here, send only a CSR, and save the certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			asJSON, _ := f.GetBool("json")
			var res enrollResult
			var err error
			if est := must(f.GetString("est")); est != "" && f.Changed("server") {
				err = fault.New(fault.InvalidArgument, "give --server or --est, not both")
			} else if est != "" {
				res, err = runEnrollEST(estEnrollFlags(f))
			} else if must(f.GetBool("server-keygen")) || f.Changed("idevid-cert") || f.Changed("idevid-key") {
				err = fault.New(fault.InvalidArgument, "--server-keygen and --idevid-cert/--idevid-key need --est")
			} else {
				res, err = runEnroll(must(f.GetString("server")), must(f.GetString("token")), must(f.GetString("out")),
					must(f.GetString("device-id")), must(f.GetString("key-type")), must(f.GetString("ca-file")), must(f.GetBool("force")))
			}
			if asJSON {
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
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s (%s), serial %s, valid until %s\nwrote %s, %s, %s\n",
				res.DeviceID, res.Identity, res.Serial, res.NotAfter.Format("2006-01-02 15:04:05Z07:00"),
				res.Files["key"], res.Files["certificate"], res.Files["chain"])
			return nil
		},
	}
	f := cmd.Flags()
	f.String("server", "", "Gatehouse API base URL, e.g. http://127.0.0.1:8080")
	f.String("token", os.Getenv("GATEHOUSE_BOOTSTRAP_TOKEN"), "one-time bootstrap token (or GATEHOUSE_BOOTSTRAP_TOKEN)")
	f.String("out", ".", "directory for device.key, device.crt and ca-chain.crt")
	f.String("device-id", "", "requested device id, for tokens that do not fix one")
	f.String("key-type", "P-256", "P-256, P-384, Ed25519, RSA-2048, RSA-3072 or RSA-4096")
	f.String("ca-file", "", "CA bundle to trust for an https server (default: system roots)")
	f.Bool("force", false, "overwrite an existing device.key")
	f.Bool("json", false, "print the result (or the error) as JSON")
	f.String("est", "", "enroll over EST (RFC 7030) instead: https://host[:port][/.well-known/est[/label]]; needs --ca-file")
	f.String("idevid-cert", "", "with --est: the vendor IDevID certificate (PEM, chain allowed) as TLS client certificate, instead of --token")
	f.String("idevid-key", "", "with --est: the IDevID's private key (PEM)")
	f.Bool("server-keygen", false, "with --est: the server generates the key (serverkeygen); --key-type is the type asked for")
	f.SetNormalizeFunc(caFileAlias)
	return cmd
}

// estEnrollFlags reads `enroll --est`'s flags. A token only in the
// environment is not sent along with an IDevID.
func estEnrollFlags(f *pflag.FlagSet) estEnroll {
	o := estEnroll{url: must(f.GetString("est")), caFile: must(f.GetString("ca-file")), token: must(f.GetString("token")),
		deviceID: must(f.GetString("device-id")), idevidCert: must(f.GetString("idevid-cert")), idevidKey: must(f.GetString("idevid-key")),
		out: must(f.GetString("out")), keyType: must(f.GetString("key-type")), keyTypeSet: f.Changed("key-type"),
		serverKeygen: must(f.GetBool("server-keygen")), force: must(f.GetBool("force"))}
	if (o.idevidCert != "" || o.idevidKey != "") && !f.Changed("token") {
		o.token = ""
	}
	return o
}

type enrollResult struct {
	OK       bool              `json:"ok"`
	Files    map[string]string `json:"files"`
	DeviceID string            `json:"device_id"`
	Identity string            `json:"identity"`
	Serial   string            `json:"serial"`
	NotAfter jsonTime          `json:"not_after"`
}

func runEnroll(server, token, out, deviceID, keyType, caFile string, force bool) (enrollResult, error) {
	if token == "" {
		return enrollResult{}, fault.New(fault.TokenInvalid, "--token is required")
	}
	if deviceID != "" {
		if err := deviceid.Check("--device-id", deviceID); err != nil {
			return enrollResult{}, err
		}
	}
	keyPath := filepath.Join(out, deviceKeyFile)
	if _, err := os.Stat(keyPath); err == nil && !force {
		return enrollResult{}, fault.New(fault.AlreadyExists, "%s exists; this device looks enrolled (use --force to replace it)", keyPath)
	}
	c, err := newClient(server, "", caFile)
	if err != nil {
		return enrollResult{}, err
	}
	key, err := generateKey(keyType)
	if err != nil {
		return enrollResult{}, err
	}
	// The CSR carries no names: the server decides the identity.
	// The id also goes in the CSR's serialNumber, where a profile with
	// device_id_from csr_serial_number reads it (deviceCSR).
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, deviceCSR(deviceID), key)
	if err != nil {
		return enrollResult{}, err
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	body, err := postEnroll(c, apitypes.EnrollRequest{Token: token, CSR: string(csrPEM), DeviceID: deviceID})
	if err != nil {
		return enrollResult{}, err
	}
	var res apitypes.EnrollResponse
	if err := json.Unmarshal(body, &res); err != nil || res.Certificate == "" {
		return enrollResult{}, fault.New(fault.Unavailable, "server sent an unreadable enrollment response")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return enrollResult{}, err
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return enrollResult{}, err
	}
	files := map[string]string{"key": keyPath, "certificate": filepath.Join(out, deviceCertFile),
		"chain": filepath.Join(out, deviceChainFile)}
	// The key is written last-but-atomically with the rest: a half-enrolled
	// directory (certificate without key) would be unusable.
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{files["certificate"], []byte(res.Certificate), 0o644},
		{files["chain"], []byte(res.Chain), 0o644},
		{keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	}
	for _, w := range writes {
		if err := writeFileAtomic(w.path, w.data, w.mode); err != nil {
			return enrollResult{}, err
		}
	}
	return enrollResult{OK: true, Files: files, DeviceID: res.DeviceID, Identity: res.Identity, Serial: res.Serial,
		NotAfter: jsonTime{res.NotAfter}}, nil
}

// enrollRetryDelays are the pauses before resending an enrollment whose
// answer was lost.
var enrollRetryDelays = []time.Duration{500 * time.Millisecond, 2 * time.Second}

// postEnroll sends the enrollment, and sends the very same request again
// (same token, same key) when no answer came back: the server may have
// committed it, and then answers the retry with the same certificate
// instead of token_used. Refusals are final.
func postEnroll(c *client, req apitypes.EnrollRequest) ([]byte, error) {
	body, err := c.do("POST", "/api/v1/enroll", "", req)
	for _, d := range enrollRetryDelays {
		if !fault.Is(err, fault.Unavailable) {
			break
		}
		time.Sleep(d)
		body, err = c.do("POST", "/api/v1/enroll", "", req)
	}
	return body, err
}

// generateKey makes the --key-type key (ca.GenerateKey).
func generateKey(kind string) (crypto.Signer, error) {
	key, err := ca.GenerateKey(kind)
	if fault.Is(err, fault.InvalidArgument) {
		return nil, fault.New(fault.InvalidArgument, "unknown --key-type %q", kind)
	}
	return key, err
}

// writeFileAtomic writes via a temp file and rename, so a crash never leaves
// a truncated key or certificate behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return errors.Join(err, os.Remove(name))
	}
	ok = true
	return nil
}
