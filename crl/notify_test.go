package crl_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestNotifyWakesPickup: replica b polls once a minute, so only Notify,
// called on the PostgreSQL announcement of a's list, explains b serving
// that list within a second.
func TestNotifyWakesPickup(t *testing.T) {
	ctx := context.Background()
	dsn := testdb.Postgres(t)
	caDir := filepath.Join(t.TempDir(), "ca")
	if err := ca.Init(ca.InitConfig{Dir: caDir, Passphrase: []byte("a-test-passphrase-123")}); err != nil {
		t.Fatal(err)
	}
	a := newReplica(t, caDir, dsn)
	st := openStore(t, dsn)
	c, err := ca.New(ca.Config{Dir: caDir, Passphrase: []byte("a-test-passphrase-123"), Store: st, CRLStore: st,
		CRLURL: "http://127.0.0.1:8080/crl"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := crl.New(crl.Config{Generator: c, Numbers: st, Issuer: c.Intermediate(), PollInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	listening := make(chan struct{}, 1)
	go func() { _ = b.Run(rctx); done <- struct{}{} }()
	go func() {
		_ = st.Listen(rctx, func(topic string) {
			select {
			case listening <- struct{}{}:
			default:
			}
			if topic == store.TopicCRL {
				b.Notify()
			}
		})
		done <- struct{}{}
	}()
	defer func() { cancel(); <-done; <-done }()
	<-listening
	// b's Run starts with Ensure; wait for its first list.
	deadline := time.Now().Add(10 * time.Second)
	for b.Latest() == nil {
		if time.Now().After(deadline) {
			t.Fatal("b has no list")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for round := range 3 {
		if err := a.pub.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		want := a.pub.Latest().Number
		start := time.Now()
		for b.Latest().Number < want {
			if time.Since(start) > time.Second {
				t.Fatalf("round %d: b still at CRL %d a second after a stored %d", round, b.Latest().Number, want)
			}
			time.Sleep(time.Millisecond)
		}
		t.Logf("round %d: b serves CRL %d %v after a's Publish returned", round, want, time.Since(start))
	}
}
