package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/deviceid"
	"github.com/gatehouse-iot/gatehouse/estclient"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// `gatehouse enroll --est` and `gatehouse renew --est`: the same device
// files as the API flows, over EST (RFC 7030) through package estclient.

// estEnroll is what `enroll --est` was given.
type estEnroll struct {
	url, caFile           string
	token, deviceID       string
	idevidCert, idevidKey string
	out, keyType          string
	// keyTypeSet: --key-type was given; else the server's csrattrs may
	// choose another type than the default.
	keyTypeSet          bool
	serverKeygen, force bool
}

// estAuth builds the client's configuration from the enroll flags: the
// bootstrap token as the Basic password, or
// the IDevID as the TLS client certificate and no Basic auth at all.
func estAuth(o estEnroll) (estclient.Config, error) {
	cfg := estclient.Config{URL: o.url}
	switch idevid := o.idevidCert != "" || o.idevidKey != ""; {
	case idevid && o.token != "":
		return cfg, fault.New(fault.InvalidArgument, "give --token or --idevid-cert/--idevid-key, not both")
	case idevid && (o.idevidCert == "" || o.idevidKey == ""):
		return cfg, fault.New(fault.InvalidArgument, "--idevid-cert and --idevid-key go together")
	case idevid && o.deviceID != "":
		return cfg, fault.New(fault.InvalidArgument, "with an IDevID the server derives the device id from it: drop --device-id")
	case idevid:
		pair, err := tls.LoadX509KeyPair(o.idevidCert, o.idevidKey)
		if err != nil {
			return cfg, fault.Wrap(err, fault.InvalidArgument, "cannot load the IDevID %s and %s: %v", o.idevidCert, o.idevidKey, err)
		}
		cfg.Certificate = &pair
	case o.token == "":
		return cfg, fault.New(fault.TokenInvalid, "--token (or --idevid-cert and --idevid-key) is required")
	default:
		if o.deviceID != "" {
			if err := deviceid.Check("--device-id", o.deviceID); err != nil {
				return cfg, err
			}
		}
		// EST's Basic user names nothing (libest sends a fixed one): the
		// device id travels in the CSR's subject (deviceCSR).
		cfg.Password = o.token
	}
	pool, err := estTrust(o.caFile)
	if err != nil {
		return cfg, err
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// estTrust reads --ca-file, required with --est: the CA certificates the
// server sends become the device's, so its TLS certificate must be
// vouched for by a file the operator chose, not by the system roots.
func estTrust(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, fault.New(fault.InvalidArgument, "--ca-file is required with --est: the CA that vouches for the EST server's TLS certificate")
	}
	return readPool(caFile)
}

// runEnrollEST enrolls over EST: the CA certificates first (cacerts), then
// simpleenroll with a key made here, or serverkeygen. It writes the files
// `enroll` writes only once the certificate chains to those CA
// certificates.
func runEnrollEST(o estEnroll) (enrollResult, error) {
	keyPath := filepath.Join(o.out, deviceKeyFile)
	if _, err := os.Stat(keyPath); err == nil && !o.force {
		return enrollResult{}, fault.New(fault.AlreadyExists, "%s exists; this device looks enrolled (use --force to replace it)", keyPath)
	}
	cfg, err := estAuth(o)
	if err != nil {
		return enrollResult{}, err
	}
	c, err := estclient.New(cfg)
	if err != nil {
		return enrollResult{}, err
	}
	ctx := context.Background()
	chain, err := c.CACerts(ctx)
	if err != nil {
		return enrollResult{}, err
	}
	if !o.keyTypeSet {
		// Advice only (the server checks the key it gets): a server that
		// cannot say gets the default.
		if attrs, err := c.CSRAttrs(ctx); err == nil {
			o.keyType = pickKeyType(estclient.KeyTypes(attrs), o.keyType)
		}
	}
	// The key is made here; with --server-keygen it only signs the
	// request, which the server ignores but for the key type (RFC 7030
	// §4.4.1).
	key, err := generateKey(o.keyType)
	if err != nil {
		return enrollResult{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, deviceCSR(o.deviceID), key)
	if err != nil {
		return enrollResult{}, err
	}
	var leaf *x509.Certificate
	var keyDER []byte
	if o.serverKeygen {
		sk, err := c.ServerKeygen(ctx, csr)
		if err != nil {
			return enrollResult{}, err
		}
		leaf, keyDER = sk.Certificate, sk.PKCS8
	} else {
		if leaf, err = simpleEnrollRetry(ctx, c, csr); err != nil {
			return enrollResult{}, err
		}
		if keyDER, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
			return enrollResult{}, err
		}
	}
	if err := verifyIssued(leaf, chain); err != nil {
		return enrollResult{}, err
	}
	if err := os.MkdirAll(o.out, 0o700); err != nil {
		return enrollResult{}, err
	}
	files := map[string]string{"key": keyPath, "certificate": filepath.Join(o.out, deviceCertFile),
		"chain": filepath.Join(o.out, deviceChainFile)}
	// The key last: a directory with a certificate and no key is what a
	// crash may leave, never a key without its certificate.
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{files["certificate"], certsPEM(leaf), 0o644},
		{files["chain"], certsPEM(chain...), 0o644},
		{keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
	} {
		if err := writeFileAtomic(w.path, w.data, w.mode); err != nil {
			return enrollResult{}, err
		}
	}
	res := issuedResult(leaf, files)
	if o.deviceID != "" && res.DeviceID != o.deviceID {
		// Enrolled all the same (the token is spent and the files are
		// written), but not as asked: a factory line must notice.
		return res, fault.New(fault.Conflict, "enrolled as %q, not %q: the token's profile does not take the device id from the CSR's serialNumber (device_id_from)", res.DeviceID, o.deviceID)
	}
	return res, nil
}

// deviceCSR is the CSR template of an enrollment (API or EST): --device-id as the
// subject's serialNumber, where a profile with device_id_from
// csr_serial_number reads it (and as CN, for the eye), else no names.
func deviceCSR(deviceID string) *x509.CertificateRequest {
	if deviceID == "" {
		return &x509.CertificateRequest{}
	}
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: deviceID, SerialNumber: deviceID}}
}

// pickKeyType is def if the server allows it or says nothing, else the
// first type it allows (RSA as RSA-2048, the least any profile takes).
func pickKeyType(allowed []string, def string) string {
	if len(allowed) == 0 || slices.Contains(allowed, def) {
		return def
	}
	if allowed[0] == "RSA" {
		return "RSA-2048"
	}
	return allowed[0]
}

// simpleEnrollRetry sends the enrollment, and the very same request again
// when no answer came back, as postEnroll does: a server that committed it
// answers the same token and key with the same certificate.
func simpleEnrollRetry(ctx context.Context, c *estclient.Client, csr []byte) (*x509.Certificate, error) {
	leaf, err := c.SimpleEnroll(ctx, csr)
	for _, d := range enrollRetryDelays {
		if !fault.Is(err, fault.Unavailable) {
			break
		}
		time.Sleep(d)
		leaf, err = c.SimpleEnroll(ctx, csr)
	}
	return leaf, err
}

// runRenewEST re-enrolls over EST (simplereenroll) with a new key (of
// keyType, or of the current key's type when empty), over
// mutual TLS with the current certificate, and replaces the files as
// `renew --rotate-key` does. The CA certificates are fetched first: once
// the server answers, the old certificate is superseded, so nothing that
// can fail may stand between that answer and the files.
func runRenewEST(url, dir, caFile, keyType string) (enrollResult, error) {
	keyPath, certPath := filepath.Join(dir, deviceKeyFile), filepath.Join(dir, deviceCertFile)
	if err := finishKeySwap(certPath, keyPath); err != nil {
		return enrollResult{}, err
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return enrollResult{}, fault.Wrap(err, fault.InvalidArgument, "cannot load %s and %s: %v", certPath, keyPath, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return enrollResult{}, fault.Wrap(err, fault.InvalidArgument, "%s does not parse", certPath)
		}
	}
	if now := time.Now(); now.After(pair.Leaf.NotAfter) {
		return enrollResult{}, fault.New(fault.CertInvalid, "%s expired at %s: EST re-enrollment needs a valid certificate "+
			"(a profile with renew_after_expiry renews it with --server, by challenge)", certPath, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	// Send the intermediate with the leaf, as TLS clients should.
	if chainPEM, err := os.ReadFile(filepath.Join(dir, deviceChainFile)); err == nil {
		if block, _ := pem.Decode(chainPEM); block != nil && block.Type == "CERTIFICATE" {
			pair.Certificate = append(pair.Certificate, block.Bytes)
		}
	}
	pool, err := estTrust(caFile)
	if err != nil {
		return enrollResult{}, err
	}
	c, err := estclient.New(estclient.Config{URL: url, RootCAs: pool, Certificate: &pair})
	if err != nil {
		return enrollResult{}, err
	}
	ctx := context.Background()
	chain, err := c.CACerts(ctx)
	if err != nil {
		return enrollResult{}, err
	}
	if keyType == "" {
		keyType = ca.KeyType(pair.Leaf.PublicKey)
	}
	key, err := generateKey(keyType)
	if err != nil {
		return enrollResult{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return enrollResult{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return enrollResult{}, err
	}
	leaf, err := c.SimpleReenroll(ctx, csr)
	if err != nil {
		return enrollResult{}, err
	}
	if err := verifyIssued(leaf, chain); err != nil {
		return enrollResult{}, err
	}
	files := map[string]string{"key": keyPath, "certificate": certPath, "chain": filepath.Join(dir, deviceChainFile)}
	// As runRenew with --rotate-key: the new key to a side file, the
	// certificate, then the key renamed into place.
	if err := writeFileAtomic(keyPath+".new", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return enrollResult{}, err
	}
	if err := writeFileAtomic(certPath, certsPEM(leaf), 0o644); err != nil {
		return enrollResult{}, err
	}
	if err := os.Rename(keyPath+".new", keyPath); err != nil {
		return enrollResult{}, err
	}
	if err := writeFileAtomic(files["chain"], certsPEM(chain...), 0o644); err != nil {
		return enrollResult{}, err
	}
	return issuedResult(leaf, files), nil
}

// finishKeySwap completes a replacement a crash interrupted between the
// new certificate and the rename of its key: when device.key.new is the
// key of device.crt and device.key is not, the new key takes its place.
// Without this the device would hold a certificate it cannot use and a
// superseded one it no longer has.
func finishKeySwap(certPath, keyPath string) error {
	next := keyPath + ".new"
	if _, err := os.Stat(next); err != nil {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		// The pair is whole. The side file is left alone: it may be the
		// new key of a renewal running now, which writes the certificate
		// next; the next renewal here overwrites it anyway.
		return nil
	}
	if _, err := tls.LoadX509KeyPair(certPath, next); err != nil {
		return nil // not ours to fix; loading reports the mismatch
	}
	return os.Rename(next, keyPath)
}

// verifyIssued checks that leaf chains to the CA certificates the server
// sent (its self-signed ones the anchors). It is checked as of the
// certificate's first second rather than the device's clock, which on a
// device without a battery-backed clock may be anywhere.
func verifyIssued(leaf *x509.Certificate, chain []*x509.Certificate) error {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	anchors := 0
	for _, c := range chain {
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots.AddCert(c)
			anchors++
		} else {
			inter.AddCert(c)
		}
	}
	if anchors == 0 {
		// An installation under an external root may publish no root:
		// its top certificate is the anchor then.
		roots.AddCert(chain[len(chain)-1])
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: leaf.NotBefore,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fault.Wrap(err, estclient.BadResponse, "the certificate the EST server issued does not chain to its CA certificates: %v", err)
	}
	return nil
}

// issuedResult describes an issued certificate as the API's enrollment
// answer does: the device id is its CN, the identity its URI SAN.
func issuedResult(leaf *x509.Certificate, files map[string]string) enrollResult {
	res := enrollResult{OK: true, Files: files, DeviceID: leaf.Subject.CommonName, Serial: ca.SerialHex(leaf.SerialNumber),
		NotAfter: jsonTime{leaf.NotAfter}}
	if len(leaf.URIs) > 0 {
		res.Identity = leaf.URIs[0].String()
	}
	return res
}

// certsPEM encodes certificates as PEM, in order.
func certsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// caFileAlias lets --ca name --ca-file, the flag's name in every other
// command.
func caFileAlias(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if name == "ca" {
		name = "ca-file"
	}
	return pflag.NormalizedName(name)
}
