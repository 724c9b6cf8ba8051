package crl_test

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/store"
)

// staleGen is a replica whose first read of the stored list (snapshot)
// happened just before another replica stored and wrote a newer one; later
// reads see the store as it is.
type staleGen struct {
	*fakeCA
	snapshot *store.CRL
}

func (s staleGen) CurrentCRL(ctx context.Context) (store.CRL, error) {
	if c := *s.snapshot; c.Number != 0 {
		*s.snapshot = store.CRL{}
		return c, nil
	}
	return s.fakeCA.CurrentCRL(ctx)
}

// numbers reads the fake store's current number.
type numbers struct{ f *fakeCA }

func (n numbers) CRLNumber(context.Context) (int64, error) {
	n.f.mu.Lock()
	defer n.f.mu.Unlock()
	return n.f.n, nil
}

// TestSharedFileNeverGoesBack: replicas writing one file (a shared volume)
// never put an older list over a newer one another replica wrote; a file
// numbered beyond the store (a database restored from backup) is replaced,
// since the store holds today's revocations.
func TestSharedFileNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	f := newFakeCA(t)
	file := filepath.Join(t.TempDir(), "crl.pem")
	b := newPublisher(t, crl.Config{Generator: f, Numbers: numbers{f}, Issuer: f.cert, File: file})
	if err := b.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	first1, _ := f.CurrentCRL(ctx)
	first2 := first1
	if err := b.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if n := fileNumber(t, file); n != 2 {
		t.Fatalf("file holds %d, want 2", n)
	}

	for _, tc := range []struct {
		name string
		gen  crl.Generator
		nums crl.Numbers
		want int64
	}{
		// Read list 1 before the other replica stored and wrote 2.
		{"stale replica", staleGen{f, &first1}, numbers{f}, 2},
		{"stale replica without Numbers", staleGen{f, &first2}, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newPublisher(t, crl.Config{Generator: tc.gen, Numbers: tc.nums, Issuer: f.cert, File: file, Validity: time.Hour})
			if err := a.Ensure(ctx); err != nil {
				t.Fatal(err)
			}
			if n := fileNumber(t, file); n != tc.want {
				t.Fatalf("file holds %d, want %d", n, tc.want)
			}
			// It serves what it read until its next poll installs the newer list.
			if cur := a.Latest(); cur == nil || cur.Number != 1 {
				t.Fatalf("installed %+v", cur)
			}
		})
	}

	// A restored database: same CA, numbers start again below the file's.
	restored := &fakeCA{t: t, key: f.key, cert: f.cert}
	r := newPublisher(t, crl.Config{Generator: restored, Numbers: numbers{restored}, Issuer: f.cert, File: file})
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if n := fileNumber(t, file); n != 1 {
		t.Fatalf("file numbered beyond the store kept (%d)", n)
	}
}

// TestCheckFile: the start-up check refuses a missing, broken or expired
// file and accepts a current one.
func TestCheckFile(t *testing.T) {
	f := newFakeCA(t)
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if data != nil {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	current := f.sign(1, now, now.Add(time.Hour))
	expired := f.sign(2, now.Add(-2*time.Hour), now.Add(-time.Hour))
	for _, tc := range []struct {
		name, file string
		want       string // "" for usable
	}{
		{"missing", write("missing.pem", nil), "no such file"},
		{"garbage", write("garbage.pem", []byte("hello")), "not a PEM"},
		{"expired", write("expired.pem", toPEM(expired.DER)), "expired"},
		{"current", write("current.pem", toPEM(current.DER)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPublisher(t, crl.Config{Generator: f, Issuer: f.cert, File: tc.file})
			err := p.CheckFile()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("CheckFile: %v, want %q", err, tc.want)
			}
		})
	}
	if err := newPublisher(t, crl.Config{Generator: f}).CheckFile(); err != nil {
		t.Fatalf("no file configured: %v", err)
	}
}

func toPEM(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }
