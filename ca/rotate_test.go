package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
)

// TestRotate: two rotations leave three generations; the CA issues with
// the newest, verifies leaves of all, signs one CRL per intermediate with
// one number, and has a delegated OCSP responder for each retired one. On
// both databases, since the retired lists are stored with the current one.
func TestRotate(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) { rotate(t, testdb.DSN(t, backend)) })
	}
}

func rotate(t *testing.T, dsn string) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dsn)
	load := func() *ca.CA {
		c, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, CRLStore: st, CRLURL: "http://127.0.0.1:1/crl"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := load()
	leaves := []*x509.Certificate{issue(t, c1, "gen-1")}
	for want := 2; want <= 3; want++ {
		inter, err := ca.Rotate(ca.RotateRequest{Dir: dir, Passphrase: pass})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(inter.Subject.CommonName, " G"+string(rune('0'+want))) || strings.Count(inter.Subject.CommonName, " G") != 1 {
			t.Fatalf("generation %d named %q", want, inter.Subject.CommonName)
		}
		c := load()
		if c.Generation() != want || len(c.Issuers()) != want || !c.Intermediate().Equal(inter) {
			t.Fatalf("after rotation: generation %d, %d issuers", c.Generation(), len(c.Issuers()))
		}
		leaves = append(leaves, issue(t, c, "gen-"+string(rune('0'+want))))
	}
	c := load()
	issuers := c.Issuers()
	for i, leaf := range leaves {
		if _, err := c.VerifyLeaf(leaf); err != nil {
			t.Fatalf("leaf of generation %d: %v", i+1, err)
		}
		// Newest first: generation 3 is issuers[0].
		if err := leaf.CheckSignatureFrom(issuers[len(issuers)-1-i]); err != nil {
			t.Fatalf("leaf of generation %d not signed by its intermediate: %v", i+1, err)
		}
	}
	if cdp := leaves[2].CRLDistributionPoints; len(cdp) != 1 || cdp[0] != "http://127.0.0.1:1/crl/3" {
		t.Fatalf("generation 3 leaf CRL URL %v", cdp)
	}
	if cdp := leaves[0].CRLDistributionPoints; len(cdp) != 1 || cdp[0] != "http://127.0.0.1:1/crl" {
		t.Fatalf("generation 1 leaf CRL URL %v", cdp)
	}
	testdb.SeedCertificates(t, dsn, []testdb.Cert{{Serial: ca.SerialHex(leaves[0].SerialNumber), NotAfter: leaves[0].NotAfter,
		RevokedAt: time.Now().Add(-time.Minute), Reason: 1}})
	if _, err := c.GenerateCRL(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := st.GetCRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Others) != 2 || stored.Others[0].Generation != 2 || stored.Others[1].Generation != 1 {
		t.Fatalf("stored retired lists: %+v", stored.Others)
	}
	for i, der := range [][]byte{stored.DER, stored.Others[0].DER, stored.Others[1].DER} {
		rl, err := x509.ParseRevocationList(der)
		if err != nil || rl.CheckSignatureFrom(issuers[i]) != nil || rl.Number.Int64() != stored.Number ||
			len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaves[0].SerialNumber) != 0 {
			t.Fatalf("list %d: %v", i, err)
		}
	}
	signers, err := c.RetiredOCSPSigners(ctx, 0)
	if err != nil || len(signers) != 2 {
		t.Fatalf("retired OCSP signers: %d %v", len(signers), err)
	}
	for i, s := range signers {
		cred, err := s.Current(ctx)
		if err != nil || cred.Cert.CheckSignatureFrom(issuers[i+1]) != nil || !s.Issuer().Equal(issuers[i+1]) ||
			len(cred.Cert.ExtKeyUsage) != 1 || cred.Cert.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || cred.Cert.IsCA {
			t.Fatalf("retired responder %d: %v", i, err)
		}
	}
}

func TestRotateOfflineRootNeedsItsKey(t *testing.T) {
	tmp := t.TempDir()
	dir, keyOut := filepath.Join(tmp, "ca"), filepath.Join(tmp, "root.key")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, RootKeyOut: keyOut, RootPassphrase: rootPass}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Rotate(ca.RotateRequest{Dir: dir, Passphrase: pass}); !fault.Is(err, fault.Conflict) {
		t.Fatalf("rotate without the offline root key: %v", err)
	}
	wrong, err := ca.LoadKey(filepath.Join(dir, ca.IntermediateKeyFile), pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Rotate(ca.RotateRequest{Dir: dir, Passphrase: pass, RootKey: wrong}); !fault.Is(err, fault.InvalidArgument) {
		t.Fatalf("rotate with a key that is not the root's: %v", err)
	}
	key, err := ca.LoadKey(keyOut, rootPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Rotate(ca.RotateRequest{Dir: dir, Passphrase: pass, RootKey: key}); err != nil {
		t.Fatal(err)
	}
}

// TestRetiredIntermediateExpiry: a retired intermediate near its end must
// not cap the set's nextUpdate (the publisher would regenerate on every
// poll through its last refresh window), and once it has expired while
// serve runs, lists keep being published without it, with the revocations
// made since. On both databases.
func TestRetiredIntermediateExpiry(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) { retiredIntermediateExpiry(t, testdb.DSN(t, backend)) })
	}
}

func retiredIntermediateExpiry(t *testing.T, dsn string) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass, IntermediateValidity: 3 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Rotate(ca.RotateRequest{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	st := openStore(t, dsn)
	c, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, CRLStore: st, CRLURL: "http://127.0.0.1:1/crl", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	old := c.Issuers()[1]
	p, err := crl.New(crl.Config{Generator: c, Numbers: st, Issuer: c.Intermediate(), Generation: c.Generation(),
		Retired: map[int]*x509.Certificate{1: old}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	cur := p.Latest()
	if left := cur.NextUpdate.Sub(clock()); left <= 12*time.Hour {
		t.Errorf("a fresh list set is due again in %s (refresh 12h before): it would be regenerated on every poll", left)
	}
	if len(cur.Others) != 1 || cur.Others[0].Generation != 1 {
		t.Fatalf("before its expiry the retired intermediate's list is served: %+v", cur.Others)
	}
	now.Store(old.NotAfter.Add(time.Minute).UnixNano())
	leaf := issue(t, c, "after-expiry")
	testdb.SeedCertificates(t, dsn, []testdb.Cert{{Serial: ca.SerialHex(leaf.SerialNumber), NotAfter: leaf.NotAfter,
		RevokedAt: clock().Add(-time.Second), Reason: 1}})
	if err := p.Publish(ctx); err != nil {
		t.Fatalf("after the retired intermediate expired, publication fails: %v", err)
	}
	cur = p.Latest()
	rl, err := x509.ParseRevocationList(cur.DER)
	if err != nil || len(cur.Others) != 0 || len(rl.RevokedCertificateEntries) != 1 ||
		rl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("list after the expiry: others %d, err %v", len(cur.Others), err)
	}
}

// TestStaleReplicaAfterRotate: replica A restarted after "ca rotate",
// replica B (same database) not yet. A revokes; B, which cannot verify A's
// main list, installs its own intermediate's list from A's set (same
// number, same entries) within a few polls, and reports itself degraded.
// On both databases.
func TestStaleReplicaAfterRotate(t *testing.T) {
	for _, backend := range testdb.All() {
		t.Run(backend, func(t *testing.T) { staleReplicaAfterRotate(t, testdb.DSN(t, backend)) })
	}
}

func staleReplicaAfterRotate(t *testing.T, dsn string) {
	ctx := context.Background()
	tmp := t.TempDir()
	dirA, dirB := filepath.Join(tmp, "a", "ca"), filepath.Join(tmp, "b", "ca")
	if err := ca.Init(ca.InitConfig{Dir: dirA, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dirB, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Rotate(ca.RotateRequest{Dir: dirA, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dsn)
	pub := func(dir string) (*ca.CA, *crl.Publisher) {
		c, err := ca.New(ca.Config{Dir: dir, Passphrase: pass, Store: st, CRLStore: st, CRLURL: "http://127.0.0.1:1/crl"})
		if err != nil {
			t.Fatal(err)
		}
		retired := map[int]*x509.Certificate{}
		for i, g := range c.RetiredGenerations() {
			retired[g] = c.Issuers()[i+1]
		}
		p, err := crl.New(crl.Config{Generator: c, Numbers: st, Issuer: c.Intermediate(), Generation: c.Generation(),
			Retired: retired, PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return c, p
	}
	_, pa := pub(dirA)
	b, pb := pub(dirB)
	leaf := issue(t, b, "dev") // generation 1, by the replica not restarted
	if err := pb.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = pb.Run(rctx) }()
	testdb.SeedCertificates(t, dsn, []testdb.Cert{{Serial: ca.SerialHex(leaf.SerialNumber), NotAfter: leaf.NotAfter,
		RevokedAt: time.Now().Add(-time.Minute), Reason: 1}})
	if err := pa.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	want := pa.Latest().Number
	deadline := time.Now().Add(10 * time.Second)
	for pb.Latest().Number < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cur := pb.Latest()
	rl, err := x509.ParseRevocationList(cur.ForGeneration(0))
	if err != nil || cur.Number < want || rl.CheckSignatureFrom(b.Intermediate()) != nil || len(rl.RevokedCertificateEntries) != 1 ||
		rl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("replica B serves CRL %d (A stored %d) without the revocation: %v; status %+v", cur.Number, want, err, pb.Status())
	}
	if d := pb.Degraded(); len(d) != 1 || !strings.Contains(d[0], "restart") {
		t.Fatalf("replica B reports %q", d)
	}
	if d := pa.Degraded(); len(d) != 0 {
		t.Fatalf("replica A reports %q", d)
	}
}

// TestRotateRenameFailure: a rotation that fails at the key rename leaves
// the CA as it was (no retired copy, so it can rotate again); one that
// fails at the certificate rename, after the new key replaced the old,
// keeps the old key under its retired name: it is its only copy.
func TestRotateRenameFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	old, err := ca.ParseCertsPEM(readFile(t, filepath.Join(dir, ca.IntermediateCertFile)))
	if err != nil {
		t.Fatal(err)
	}
	restore := ca.FailRename(ca.IntermediateKeyFile)
	_, err = ca.Rotate(ca.RotateRequest{Dir: dir, Passphrase: pass})
	restore()
	if err == nil {
		t.Fatal("rotate with a failing key rename succeeded")
	}
	for _, f := range []string{ca.RetiredKeyFile(1), ca.RetiredCertFile(1)} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Fatalf("%s left after a rotation that changed nothing: %v", f, err)
		}
	}
	loadCA(t, dir)

	restore = ca.FailRename(ca.IntermediateCertFile)
	_, err = ca.Rotate(ca.RotateRequest{Dir: dir, Passphrase: pass})
	restore()
	if err == nil || !strings.Contains(err.Error(), "to finish") {
		t.Fatalf("rotate with a failing certificate rename: %v", err)
	}
	key, err := ca.LoadKey(filepath.Join(dir, ca.RetiredKeyFile(1)), pass)
	if err != nil {
		t.Fatalf("the old intermediate key is gone: %v", err)
	}
	if !old[0].PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatal("the retired key is not the old intermediate's")
	}
}

// TestRotateRefusesKMS: with the issuing key in a PKCS#11 token (ca.kms
// set, or no key file beside the certificate, as init --kms leaves it)
// rotate refuses clearly and changes nothing.
func TestRotateRefusesKMS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: dir, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	check := func(req ca.RotateRequest) {
		t.Helper()
		_, err := ca.Rotate(req)
		if !fault.Is(err, fault.InvalidArgument) || !strings.Contains(err.Error(), "PKCS#11") {
			t.Fatalf("rotate: %v, want invalid_argument naming PKCS#11", err)
		}
		if _, err := os.Stat(filepath.Join(dir, ca.RetiredCertFile(1))); !os.IsNotExist(err) {
			t.Fatalf("a refused rotation retired the intermediate: %v", err)
		}
	}
	check(ca.RotateRequest{Dir: dir, Passphrase: pass, KMS: "pkcs11:token=gatehouse;object=issuing"})
	if err := os.Remove(filepath.Join(dir, ca.IntermediateKeyFile)); err != nil {
		t.Fatal(err)
	}
	check(ca.RotateRequest{Dir: dir, Passphrase: pass})
}
