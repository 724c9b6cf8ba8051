package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/internal/testpki"
	"github.com/gatehouse-iot/gatehouse/store"
)

var rootPass = []byte("a different root passphrase")

// openStore opens a store on dsn, closed when t ends.
func openStore(t testing.TB, dsn string) *store.Store {
	t.Helper()
	st, err := store.New(context.Background(), store.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func loadCA(t *testing.T, dir string) *ca.CA {
	t.Helper()
	c, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: openStore(t, testdb.SQLite(t))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issueAndVerify issues a leaf from c and has openssl verify it against
// rootFile with the CA's own chain as the untrusted part.
func issueAndVerify(t *testing.T, c *ca.CA, rootFile, device string) {
	t.Helper()
	iss, err := c.Issue(context.Background(), ca.LeafRequest{CSR: testpki.ParseCSR(t, testpki.CSR(t, testpki.Key(t, "P-256"))),
		Fleet: "f", DeviceID: device, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	leaf, chain := filepath.Join(tmp, "leaf.crt"), filepath.Join(tmp, "chain.crt")
	if err := os.WriteFile(leaf, ca.EncodePEM(iss.Leaf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chain, c.ChainPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := openssl(t, "verify", "-purpose", "sslclient", "-CAfile", rootFile, "-untrusted", chain, leaf); !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify: %s", out)
	}
}

func TestInitRootOffline(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "data", "ca")
	keyOut := filepath.Join(base, "offline", "root.key")
	if err := os.MkdirAll(filepath.Dir(keyOut), 0o700); err != nil {
		t.Fatal(err)
	}
	// Inside the CA dir is refused, also through a symlink to it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	for _, inside := range []string{filepath.Join(dir, "root.key"), filepath.Join(base, "link", "x", "root.key")} {
		err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, RootKeyOut: inside, RootPassphrase: rootPass})
		if !fault.Is(err, fault.InvalidArgument) || !strings.Contains(err.Error(), "inside") {
			t.Fatalf("root key inside the CA dir (%s): %v, want invalid_argument", inside, err)
		}
	}
	// The offline root needs a passphrase of its own.
	for _, rp := range [][]byte{nil, pass} {
		err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, RootKeyOut: keyOut, RootPassphrase: rp})
		if !fault.Is(err, fault.InvalidArgument) || !strings.Contains(err.Error(), "passphrase of its own") {
			t.Fatalf("offline root under the CA passphrase (%q): %v, want invalid_argument", rp, err)
		}
		if _, err := os.Stat(keyOut); !os.IsNotExist(err) {
			t.Fatalf("refused init wrote the root key: %v", err)
		}
	}
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, RootKeyOut: keyOut, RootPassphrase: rootPass}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ca.RootKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("root key in the CA dir: %v", err)
	}
	if st, err := os.Stat(keyOut); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("offline root key: %v %v", st, err)
	}
	if !ca.RootOffline(dir) || ca.Pending(dir) {
		t.Fatalf("RootOffline %v Pending %v, want true false", ca.RootOffline(dir), ca.Pending(dir))
	}
	// The root key opens with its own passphrase only.
	if _, err := ca.LoadKey(keyOut, pass); err == nil {
		t.Fatal("the offline root key opened with the online passphrase")
	}
	if _, err := ca.LoadKey(keyOut, rootPass); err != nil {
		t.Fatal(err)
	}
	c := loadCA(t, dir)
	issueAndVerify(t, c, filepath.Join(dir, ca.RootCertFile), "dev-1")

	dataDir := filepath.Dir(dir)
	if p, err := ca.FindRootKey(dataDir, c.Root(), pass); err != nil || p != "" {
		t.Fatalf("FindRootKey on a clean data dir = %q, %v", p, err)
	}
	// A copy under another name is found by its key: plain, or encrypted
	// under the passphrase the finder holds.
	hidden := filepath.Join(dataDir, "backup", "old.pem")
	if err := os.MkdirAll(filepath.Dir(hidden), 0o700); err != nil {
		t.Fatal(err)
	}
	plain := exec.Command("openssl", "pkey", "-in", keyOut, "-passin", "pass:"+string(rootPass))
	pemKey, err := plain.Output()
	if err != nil {
		t.Fatal(err)
	}
	for content, pw := range map[string][]byte{string(pemKey): pass, string(readFile(t, keyOut)): rootPass} {
		if err := os.WriteFile(hidden, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := ca.FindRootKey(dataDir, c.Root(), pw)
		if err != nil || p != hidden {
			t.Fatalf("FindRootKey = %q, %v; want %s", p, err, hidden)
		}
	}
	// The intermediate's key is not the root's.
	if err := os.Remove(hidden); err != nil {
		t.Fatal(err)
	}
	if p, _ := ca.FindRootKey(dataDir, c.Root(), pass); p != "" {
		t.Fatalf("FindRootKey mistook %s for the root key", p)
	}
	// A symlink to the offline key is the key within reach.
	link := filepath.Join(dataDir, "ca", "link.pem")
	if err := os.Symlink(keyOut, link); err != nil {
		t.Fatal(err)
	}
	if p, _ := ca.FindRootKey(dataDir, c.Root(), rootPass); p != link {
		t.Fatalf("FindRootKey = %q, want the symlink %s", p, link)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	// The file name alone is enough, whatever it holds.
	if err := os.WriteFile(filepath.Join(dataDir, ca.RootKeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, _ := ca.FindRootKey(dataDir, c.Root(), pass); p != filepath.Join(dataDir, ca.RootKeyFile) {
		t.Fatalf("FindRootKey = %q, want the file named %s", p, ca.RootKeyFile)
	}
}

// TestIntermediateFromCSR: an external root (made by openssl, as a company
// PKI would) signs Gatehouse's intermediate; so does the offline root
// through SignIntermediate. Both chains verify with openssl.
func TestIntermediateFromCSR(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, IntermediateFromCSR: true}); err != nil {
		t.Fatal(err)
	}
	if !ca.Pending(dir) || !ca.Initialized(dir) {
		t.Fatal("a CA waiting for its intermediate certificate is not Pending/Initialized")
	}
	for _, f := range []string{ca.RootCertFile, ca.RootKeyFile, ca.IntermediateCertFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Fatalf("%s exists before the external root signed: %v", f, err)
		}
	}
	csrFile := filepath.Join(dir, ca.IntermediateCSRFile)
	rootKey, rootCrt, interCrt := filepath.Join(tmp, "corp.key"), filepath.Join(tmp, "corp.crt"), filepath.Join(tmp, "inter.crt")
	openssl(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes", "-keyout", rootKey,
		"-out", rootCrt, "-days", "30", "-subj", "/CN=Corp Root", "-addext", "basicConstraints=critical,CA:true",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign")
	ext := filepath.Join(tmp, "ext.cnf")
	if err := os.WriteFile(ext, []byte("basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A certificate that is not a CA is refused, and the CA stays pending.
	leafLike := filepath.Join(tmp, "notca.crt")
	openssl(t, "x509", "-req", "-in", csrFile, "-CA", rootCrt, "-CAkey", rootKey, "-days", "10", "-out", leafLike)
	err := ca.InstallIntermediate(dir, pass, readFile(t, leafLike), readFile(t, rootCrt), time.Now())
	if !fault.Is(err, fault.InvalidArgument) || !ca.Pending(dir) {
		t.Fatalf("install of a non-CA certificate: %v (pending %v)", err, ca.Pending(dir))
	}
	openssl(t, "x509", "-req", "-in", csrFile, "-CA", rootCrt, "-CAkey", rootKey, "-days", "10", "-extfile", ext, "-out", interCrt)
	// The wrong root is refused.
	other := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: other, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	err = ca.InstallIntermediate(dir, pass, readFile(t, interCrt), readFile(t, filepath.Join(other, ca.RootCertFile)), time.Now())
	if !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("install under the wrong root: %v", err)
	}
	if err := ca.InstallIntermediate(dir, pass, readFile(t, interCrt), readFile(t, rootCrt), time.Now()); err != nil {
		t.Fatal(err)
	}
	if ca.Pending(dir) {
		t.Fatal("still pending after install")
	}
	if err := ca.InstallIntermediate(dir, pass, readFile(t, interCrt), readFile(t, rootCrt), time.Now()); !fault.Is(err, fault.Conflict) {
		t.Fatalf("second install: %v, want conflict", err)
	}
	issueAndVerify(t, loadCA(t, dir), rootCrt, "dev-ext")
}

func TestSignIntermediateRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	rootDir, keyOut := filepath.Join(tmp, "a", "ca"), filepath.Join(tmp, "root.key")
	if err := ca.Init(ca.InitConfig{Dir: rootDir, Passphrase: pass, RootKeyOut: keyOut, RootPassphrase: rootPass}); err != nil {
		t.Fatal(err)
	}
	root, err := ca.ParseCertsPEM(readFile(t, filepath.Join(rootDir, ca.RootCertFile)))
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := ca.LoadKey(keyOut, rootPass)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "b", "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, IntermediateFromCSR: true, Name: "Plant 7"}); err != nil {
		t.Fatal(err)
	}
	csr, err := ca.ParseCSRPEM(readFile(t, filepath.Join(dir, ca.IntermediateCSRFile)))
	if err != nil {
		t.Fatal(err)
	}
	// The wrong key for the root certificate is refused.
	other, _ := ca.LoadKey(filepath.Join(dir, ca.IntermediateKeyFile), pass)
	if _, err := ca.SignIntermediate(ca.SignRequest{Root: root[0], RootKey: other, CSR: csr}); !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("sign with a key that is not the root's: %v", err)
	}
	inter, err := ca.SignIntermediate(ca.SignRequest{Root: root[0], RootKey: rootKey, CSR: csr, Validity: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !inter.NotAfter.Equal(root[0].NotAfter) || !inter.MaxPathLenZero || inter.Subject.CommonName != "Plant 7 Issuing CA" {
		t.Fatalf("intermediate: notAfter %v (root %v), pathlen0 %v, CN %q", inter.NotAfter, root[0].NotAfter, inter.MaxPathLenZero, inter.Subject.CommonName)
	}
	if err := ca.InstallIntermediate(dir, pass, append(ca.EncodePEM(inter), ca.EncodePEM(root[0])...), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	c := loadCA(t, dir)
	issueAndVerify(t, c, filepath.Join(rootDir, ca.RootCertFile), "dev-offline")
}

// TestKMSNeedsTheBuildTag: a build without the pkcs11 tag refuses a KMS
// URI at init and at start instead of falling back to a key file.
func TestKMSNeedsTheBuildTag(t *testing.T) {
	if ca.KMSSupported {
		t.Skip("built with pkcs11: kms_pkcs11_test.go covers the token")
	}
	dir := filepath.Join(t.TempDir(), "ca")
	err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, KMS: "pkcs11:token=x;object=y", KMSPin: "1"})
	if !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("Init with a KMS URI: %v", err)
	}
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, testdb.SQLite(t))
	if _, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, KMS: "pkcs11:token=x;object=y", KMSPin: "1"}); !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("New with a KMS URI: %v", err)
	}
}

// TestFindRootKeyHiddenCopies: the offline root key put within the data
// directory in forms a name or PEM-head check misses is found; a directory
// symlink loop ends the walk. Each case starts from a clean data dir.
func TestFindRootKeyHiddenCopies(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	keyOut := filepath.Join(tmp, "offline", "root.key")
	if err := os.MkdirAll(filepath.Dir(keyOut), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ca.Init(ca.InitConfig{Dir: filepath.Join(data, "ca"), Passphrase: pass, RootKeyOut: keyOut, RootPassphrase: rootPass}); err != nil {
		t.Fatal(err)
	}
	roots, err := ca.ParseCertsPEM(readFile(t, filepath.Join(data, "ca", ca.RootCertFile)))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.LoadKey(keyOut, rootPass)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	write := func(path string, b []byte) string {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name string
		put  func(dir string) string // returns the path FindRootKey must name, "" for none
	}{
		{"PEM copy", func(d string) string { return write(filepath.Join(d, "old.pem"), pemKey) }},
		{"DER PKCS#8 copy", func(d string) string { return write(filepath.Join(d, "old.der"), der) }},
		{"DER SEC 1 copy", func(d string) string { return write(filepath.Join(d, "sub", "k.bin"), ecDER) }},
		{"PEM after 80 KiB of text", func(d string) string {
			return write(filepath.Join(d, "notes.txt"), append(bytes.Repeat([]byte("#\n"), 40<<10), pemKey...))
		}},
		{"PEM after a broken PEM block", func(d string) string {
			return write(filepath.Join(d, "mixed.txt"), append([]byte("-----BEGIN PRIVATE KEY-----\nnot base64\n"), pemKey...))
		}},
		{"symlinked directory holding the key", func(d string) string {
			usb := filepath.Join(t.TempDir(), "usb")
			write(filepath.Join(usb, "copy.pem"), pemKey)
			if err := os.Symlink(usb, filepath.Join(d, "offline-media")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "offline-media", "copy.pem")
		}},
		{"directory symlink loop, no key", func(d string) string {
			if err := os.Symlink(d, filepath.Join(d, "ca", "loop")); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
		{"PEM beyond the scan bound", func(d string) string {
			write(filepath.Join(d, "huge.txt"), append(make([]byte, ca.MaxKeyScan), pemKey...))
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "data")
			if err := os.CopyFS(d, os.DirFS(data)); err != nil {
				t.Fatal(err)
			}
			want := tc.put(d)
			if found, err := ca.FindRootKey(d, roots[0], pass); err != nil || found != want {
				t.Errorf("FindRootKey = %q, %v; want %q", found, err, want)
			}
		})
	}
}

// TestRootPin: the offline-root marker pins the root certificate's key
// (SHA-256 of its SubjectPublicKeyInfo). A root certificate replaced under
// it, or a pin that does not parse, stops the CA from loading with
// root_mismatch; a marker from before the pin has nothing to compare.
func TestRootPin(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "data", "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, RootKeyOut: filepath.Join(base, "root.key"), RootPassphrase: rootPass}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(base, "other")
	if err := ca.Init(ca.InitConfig{Dir: other, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	rootFile, marker := filepath.Join(dir, ca.RootCertFile), filepath.Join(dir, ca.RootOfflineFile)
	origRoot, origMarker := readFile(t, rootFile), readFile(t, marker)
	root, err := ca.ParseCertsPEM(origRoot)
	if err != nil {
		t.Fatal(err)
	}
	pin := sha256.Sum256(root[0].RawSubjectPublicKeyInfo)
	if !strings.Contains(string(origMarker), "root-spki-sha256: "+hex.EncodeToString(pin[:])) {
		t.Fatalf("the marker does not pin the root's key:\n%s", origMarker)
	}
	legacy := []byte("the root key is kept offline; serve refuses to run beside it\n")
	for _, tc := range []struct {
		name         string
		root, marker []byte
		pinned       bool
		want         fault.Code
	}{
		{"as init wrote them", origRoot, origMarker, true, ""},
		{"root certificate replaced", readFile(t, filepath.Join(other, ca.RootCertFile)), origMarker, true, ca.RootMismatch},
		{"pin not hex", origRoot, append(bytes.Clone(legacy), "root-spki-sha256: zz\n"...), true, ca.RootMismatch},
		{"pin too short", origRoot, append(bytes.Clone(legacy), "root-spki-sha256: abcd\n"...), true, ca.RootMismatch},
		{"two pins", origRoot, append(bytes.Clone(origMarker), "root-spki-sha256: "+strings.Repeat("00", 32)+"\n"...), true, ca.RootMismatch},
		{"marker from before the pin", origRoot, legacy, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(rootFile, tc.root, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(marker, tc.marker, 0o644); err != nil {
				t.Fatal(err)
			}
			certs, err := ca.ParseCertsPEM(tc.root)
			if err != nil {
				t.Fatal(err)
			}
			pinned, err := ca.CheckRootPin(dir, certs[0])
			if pinned != tc.pinned || fault.CodeOf(err) != tc.want {
				t.Fatalf("CheckRootPin = %v, %v; want %v, %q", pinned, err, tc.pinned, tc.want)
			}
			_, err = ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: openStore(t, testdb.SQLite(t))})
			if tc.want != "" && !fault.Is(err, tc.want) {
				t.Fatalf("ca.New = %v, want %s", err, tc.want)
			}
			if tc.want == "" && err != nil {
				t.Fatalf("ca.New = %v", err)
			}
		})
	}
	if pinned, err := ca.CheckRootPin(other, root[0]); pinned || err != nil {
		t.Fatalf("no marker: %v, %v", pinned, err)
	}
}

// FuzzCheckRootPin: no marker content panics CheckRootPin; whatever it
// holds, the root is either accepted unpinned, accepted because the pin is
// its own, or refused with root_mismatch.
func FuzzCheckRootPin(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, RootKeyOut: filepath.Join(filepath.Dir(dir), "root.key"), RootPassphrase: rootPass}); err != nil {
		f.Fatal(err)
	}
	marker := filepath.Join(dir, ca.RootOfflineFile)
	b, err := os.ReadFile(marker)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("root-spki-sha256: \n"))
	f.Add([]byte("x\nroot-spki-sha256: 00\nroot-spki-sha256: 00"))
	certs, err := ca.ParseCertsPEM(readFile(f, filepath.Join(dir, ca.RootCertFile)))
	if err != nil {
		f.Fatal(err)
	}
	pin := sha256.Sum256(certs[0].RawSubjectPublicKeyInfo)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(marker, data, 0o644); err != nil {
			t.Fatal(err)
		}
		pinned, err := ca.CheckRootPin(dir, certs[0])
		if err != nil && !fault.Is(err, ca.RootMismatch) {
			t.Fatalf("CheckRootPin = %v, want nil or root_mismatch", err)
		}
		if err == nil && pinned && !bytes.Contains(data, []byte(hex.EncodeToString(pin[:]))) {
			t.Fatalf("accepted a pin that is not the root's: %q", data)
		}
	})
}
