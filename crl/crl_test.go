package crl_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// fakeCA signs real lists with a throwaway key; tests steer what it returns.
type fakeCA struct {
	t     *testing.T
	key   *ecdsa.PrivateKey
	cert  *x509.Certificate
	delay time.Duration
	// next, when set, replaces the list GenerateCRL returns (by number).
	next func(n int64) (store.CRL, error)

	mu     sync.Mutex
	n      int64
	stored store.CRL
	starts []time.Time
}

func newFakeCA(t *testing.T) *fakeCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &fakeCA{t: t, key: key, cert: cert}
}

func (f *fakeCA) sign(n int64, thisUpdate, nextUpdate time.Time) store.CRL {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n),
		ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(n + 100), RevocationTime: thisUpdate, ReasonCode: 1}}}, f.cert, f.key)
	if err != nil {
		f.t.Error(err)
	}
	return store.CRL{Number: n, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Entries: 1, DER: der}
}

func (f *fakeCA) GenerateCRL(context.Context) (store.CRL, error) {
	f.mu.Lock()
	f.starts = append(f.starts, time.Now())
	f.mu.Unlock()
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.n + 1
	var (
		c   store.CRL
		err error
	)
	if f.next != nil {
		c, err = f.next(n)
	} else {
		now := time.Now().Truncate(time.Second)
		c = f.sign(n, now, now.Add(time.Hour))
	}
	if err != nil {
		return store.CRL{}, err
	}
	f.n, f.stored = n, c
	return c, nil
}

func (f *fakeCA) CurrentCRL(context.Context) (store.CRL, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return store.CRL{}, fault.New(fault.NotFound, "none")
	}
	return f.stored, nil
}

func (f *fakeCA) generations() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.starts...)
}

func newPublisher(t *testing.T, cfg crl.Config) *crl.Publisher {
	t.Helper()
	p, err := crl.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fileNumber parses the CRL file and returns its number.
func fileNumber(t *testing.T, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		t.Fatalf("CRL file is not PEM: %q", data)
	}
	rl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return rl.Number.Int64()
}

func TestPublishWritesFileAndReloads(t *testing.T) {
	ctx := context.Background()
	f := newFakeCA(t)
	dir := t.TempDir()
	file, log := filepath.Join(dir, "crl.pem"), filepath.Join(dir, "reload.log")
	p := newPublisher(t, crl.Config{Generator: f, Issuer: f.cert, File: file, Validity: time.Hour,
		ReloadCommand: `printf '%s %s\n' "$GATEHOUSE_CRL_NUMBER" "$GATEHOUSE_CRL_FILE" >> ` + log})
	if err := p.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	// A fresh stored list is installed, not regenerated.
	if err := p.Ensure(ctx); err != nil || len(f.generations()) != 1 {
		t.Fatalf("second Ensure: %v, %d generations", err, len(f.generations()))
	}
	for want := int64(2); want <= 3; want++ {
		if err := p.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		if n := fileNumber(t, file); n != want {
			t.Fatalf("file holds CRL %d, want %d", n, want)
		}
	}
	got, _ := os.ReadFile(log)
	if want := "1 " + file + "\n2 " + file + "\n3 " + file + "\n"; string(got) != want {
		t.Fatalf("reload log %q, want %q", got, want)
	}
	st := p.Status()
	if st.Number != 3 || st.Entries != 1 || st.File != file || st.FileWrittenAt.IsZero() || st.LastReload == nil ||
		st.LastReload.Error != "" || st.LastReload.Number != 3 || st.LastError != "" {
		t.Fatalf("status: %+v", st)
	}
	if cur := p.Latest(); cur == nil || cur.Number != 3 || !bytes.Contains(cur.PEM, []byte("BEGIN X509 CRL")) {
		t.Fatalf("latest: %+v", cur)
	}
	// Only the final file remains: no temporary files left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want crl.pem and reload.log", len(entries))
	}
}

func TestReloadFailureIsReportedNotFatal(t *testing.T) {
	for _, tc := range []struct {
		name, cmd, wantErr, wantOut string
		timeout                     time.Duration
	}{
		{"exit status", "echo boom; exit 3", "exit status 3", "boom\n", 0},
		{"timeout", "sleep 5", "timed out", "", 200 * time.Millisecond},
		{"missing command", "/nonexistent/reload", "exit status 127", "not found", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCA(t)
			file := filepath.Join(t.TempDir(), "crl.pem")
			p := newPublisher(t, crl.Config{Generator: f, File: file, ReloadCommand: tc.cmd, ReloadTimeout: tc.timeout})
			begin := time.Now()
			if err := p.Publish(context.Background()); err != nil {
				t.Fatalf("a failing reload command failed the publication: %v", err)
			}
			if time.Since(begin) > 3*time.Second {
				t.Fatalf("reload timeout not applied: %s", time.Since(begin))
			}
			if fileNumber(t, file) != 1 {
				t.Fatal("file not written")
			}
			r := p.Status().LastReload
			if r == nil || !strings.Contains(r.Error, tc.wantErr) || !strings.Contains(r.Output, tc.wantOut) {
				t.Fatalf("last reload: %+v", r)
			}
		})
	}
}

// TestBadListNeverReachesTheFile: an expired, unparsable, empty or
// foreign-signed list is refused and the file keeps the last good one.
func TestBadListNeverReachesTheFile(t *testing.T) {
	ctx := context.Background()
	f := newFakeCA(t)
	other := newFakeCA(t)
	file := filepath.Join(t.TempDir(), "crl.pem")
	reloads := filepath.Join(t.TempDir(), "reloads")
	p := newPublisher(t, crl.Config{Generator: f, Issuer: f.cert, File: file, ReloadCommand: "echo x >> " + reloads})
	if err := p.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(file)
	now := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		name string
		gen  func(n int64) (store.CRL, error)
		want string
	}{
		{"expired", func(n int64) (store.CRL, error) { return f.sign(n, now.Add(-2*time.Hour), now.Add(-time.Hour)), nil }, "expired"},
		{"garbage", func(n int64) (store.CRL, error) {
			return store.CRL{Number: n, NextUpdate: now.Add(time.Hour), DER: []byte("not a CRL")}, nil
		}, "unparsable"},
		{"empty", func(n int64) (store.CRL, error) { return store.CRL{Number: n, NextUpdate: now.Add(time.Hour)}, nil }, "empty"},
		{"foreign", func(n int64) (store.CRL, error) { return other.sign(n, now, now.Add(time.Hour)), nil }, "not signed"},
		{"generation error", func(int64) (store.CRL, error) { return store.CRL{}, fault.New(fault.Unavailable, "db down") }, "db down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.next = tc.gen
			err := p.Publish(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Publish: %v, want %q", err, tc.want)
			}
			if got, _ := os.ReadFile(file); !bytes.Equal(got, good) {
				t.Fatal("the file changed")
			}
			if st := p.Status(); !strings.Contains(st.LastError, tc.want) || st.Number != 1 {
				t.Fatalf("status: %+v", st)
			}
		})
	}
	if data, _ := os.ReadFile(reloads); string(data) != "x\n" {
		t.Fatalf("reload ran for a refused list: %q", data)
	}
	// The next good list clears the error.
	f.next = nil
	if err := p.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.LastError != "" || fileNumber(t, file) != st.Number {
		t.Fatalf("status after recovery: %+v", st)
	}
}

// TestPublishCoalesces: many concurrent callers share few generations, and
// each returns only after a generation that started after its call.
func TestPublishCoalesces(t *testing.T) {
	f := newFakeCA(t)
	f.delay = 50 * time.Millisecond
	p := newPublisher(t, crl.Config{Generator: f})
	const callers = 40
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i%4) * 20 * time.Millisecond)
			called := time.Now()
			if err := p.Publish(context.Background()); err != nil {
				t.Error(err)
				return
			}
			covered := false
			for _, s := range f.generations() {
				if !s.Before(called) {
					covered = true
				}
			}
			if !covered {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d callers returned without a generation that started after their call", bad.Load())
	}
	if n := len(f.generations()); n > 6 || n < 2 {
		t.Fatalf("%d generations for %d callers", n, callers)
	}
}

// TestAtomicWriteNeverEmpty rewrites the file while readers read it: every
// read sees a whole list.
func TestAtomicWriteNeverEmpty(t *testing.T) {
	f := newFakeCA(t)
	file := filepath.Join(t.TempDir(), "crl.pem")
	p := newPublisher(t, crl.Config{Generator: f, File: file})
	if err := p.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var reads atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				data, err := os.ReadFile(file)
				block, _ := pem.Decode(data)
				if err != nil || block == nil {
					t.Errorf("read a broken file: %v %q", err, data)
					return
				}
				if _, err := x509.ParseRevocationList(block.Bytes); err != nil {
					t.Errorf("read an unparsable list: %v", err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for range 50 {
		if err := p.Publish(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no reads happened")
	}
}

func TestWriteFileAtomicErrors(t *testing.T) {
	dir := t.TempDir()
	if err := crl.WriteFileAtomic(filepath.Join(dir, "missing", "crl.pem"), []byte("x"), 0o644); err == nil {
		t.Fatal("wrote into a missing directory")
	}
	path := filepath.Join(dir, "crl.pem")
	if err := crl.WriteFileAtomic(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := crl.WriteFileAtomic(path, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(got) != "two" || fi.Mode().Perm() != 0o644 {
		t.Fatalf("got %q %v", got, fi.Mode())
	}
}

func TestNewValidates(t *testing.T) {
	f := newFakeCA(t)
	for _, tc := range []struct {
		name string
		cfg  crl.Config
	}{
		{"no generator", crl.Config{}},
		{"reload without file", crl.Config{Generator: f, ReloadCommand: "true"}},
	} {
		if _, err := crl.New(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestRunRewritesFileWithoutNewNumbers: a list that could not be written is
// written by Run once the file can be, without generating new lists (a
// broken directory must not make the number race upwards).
func TestRunRewritesFileWithoutNewNumbers(t *testing.T) {
	f := newFakeCA(t)
	dir := filepath.Join(t.TempDir(), "later")
	file := filepath.Join(dir, "crl.pem")
	p := newPublisher(t, crl.Config{Generator: f, File: file, Validity: time.Hour, PollInterval: 20 * time.Millisecond})
	if err := p.Publish(context.Background()); err == nil {
		t.Fatal("Publish into a missing directory succeeded")
	}
	if st := p.Status(); st.LastError == "" || st.Number != 1 || !st.FileWrittenAt.IsZero() {
		t.Fatalf("status after a failed write: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for p.Status().FileWrittenAt.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("file never written: %+v", p.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := fileNumber(t, file); n != 1 || len(f.generations()) != 1 || p.Status().LastError != "" {
		t.Fatalf("file holds %d after %d generations; status %+v", n, len(f.generations()), p.Status())
	}
}

// TestRunRegeneratesBeforeNextUpdate: a list closer to its nextUpdate than
// RefreshBefore is replaced by Run.
func TestRunRegeneratesBeforeNextUpdate(t *testing.T) {
	f := newFakeCA(t) // lists valid for an hour
	p := newPublisher(t, crl.Config{Generator: f, Validity: 4 * time.Hour, RefreshBefore: 90 * time.Minute,
		PollInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	// Every list is "stale" (1h < 90m): Run keeps regenerating, one at a time.
	if n := len(f.generations()); n < 3 {
		t.Fatalf("%d generations in 300ms of stale lists", n)
	}
	if p.Status().Number != int64(len(f.generations())) {
		t.Fatalf("installed %d of %d", p.Status().Number, len(f.generations()))
	}
}
