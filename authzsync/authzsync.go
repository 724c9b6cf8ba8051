// Package authzsync keeps the decision core's in-memory device state in step
// with the database: a full load at start, then incremental polls, so a
// change made through any replica reaches every replica's decisions without
// a database round trip on the decision path.
package authzsync

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/internal/loop"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Source lists devices changed since a mark.
type Source interface {
	DevicesChangedSince(ctx context.Context, since time.Time) ([]store.DeviceWithCert, time.Time, error)
}

// Roles maps a certificate's role OIDs back to role names.
type Roles interface {
	RolesOf(cert *x509.Certificate) []string
}

// Sink receives device state.
type Sink interface {
	UpsertDevice(d authz.Device)
}

// Freshness learns when the device view last matched the database: the
// decision core, which denies as stale past its bound.
type Freshness interface {
	DevicesSynced(at time.Time)
}

// Config wires a Syncer.
type Config struct {
	Source Source
	Roles  Roles
	Sink   Sink
	// Interval between polls; default 1s.
	Interval time.Duration
	// Overlap re-reads this much before the last mark, absorbing clock skew
	// between replicas; default 2s.
	Overlap time.Duration
	// Fresh, when set, is told the start time of every sync that succeeded
	// (a poll, a notified sync or a direct Sync): the view is at least that
	// fresh. A change announcement alone proves nothing; the query does.
	Fresh Freshness
	// Now is the clock for Fresh; default time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Syncer copies device state into the decision core.
type Syncer struct {
	cfg   Config
	mu    sync.Mutex // serialises Sync: Run's polls and callers' SyncNow
	since time.Time
	wake  *loop.Waker
	// started counts syncs that began reading (written under mu); ok is the
	// number of the last one that succeeded. A caller that arrives after
	// sync n began and finds a later one succeeded is covered by it.
	started atomic.Uint64
	ok      uint64
}

// New returns a Syncer.
func New(cfg Config) (*Syncer, error) {
	if cfg.Source == nil || cfg.Roles == nil || cfg.Sink == nil {
		return nil, errors.New("authzsync: Source, Roles and Sink are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Overlap <= 0 {
		cfg.Overlap = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Syncer{cfg: cfg, wake: loop.NewWaker()}, nil
}

// Sync applies every change since the last call (everything on the first).
// Concurrent calls are serialised. A caller that just changed a device calls
// it directly, so its own replica decides on the new state as soon as the
// call returns.
//
// Callers that queue behind a running sync share the next one: a sync that
// began reading after a caller arrived saw everything the caller committed
// before calling, so when one has succeeded meanwhile the caller returns at
// once (0 devices). A burst of enrollments costs a few reads, not one each.
func (s *Syncer) Sync(ctx context.Context) (int, error) {
	arrived := s.started.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok > arrived {
		return 0, nil
	}
	n := s.started.Add(1)
	since := s.since
	if !since.IsZero() {
		since = since.Add(-s.cfg.Overlap)
	}
	at := s.cfg.Now()
	devs, mark, err := s.cfg.Source.DevicesChangedSince(ctx, since)
	if err != nil {
		return 0, err
	}
	for _, d := range devs {
		s.cfg.Sink.UpsertDevice(s.state(d))
	}
	s.since = mark
	s.ok = n
	if s.cfg.Fresh != nil {
		s.cfg.Fresh.DevicesSynced(at)
	}
	return len(devs), nil
}

// Notify asks Run to sync now, e.g. right after a local change.
func (s *Syncer) Notify() { s.wake.Wake() }

// Run syncs until ctx ends: on every tick and on every Notify.
func (s *Syncer) Run(ctx context.Context) error {
	loop.Run(ctx, s.cfg.Interval, s.wake.C(), func(ctx context.Context) {
		if n, err := s.Sync(ctx); err != nil {
			// Keep serving the last known state; a deny-on-error here would
			// lock every device out during a database blip. The core's
			// staleness bound (Fresh) turns a long outage into denies.
			s.cfg.Log.Error("device state sync failed", "err", err)
		} else if n > 0 {
			s.cfg.Log.Debug("device state synced", "devices", n)
		}
	})
	return nil
}

func (s *Syncer) state(d store.DeviceWithCert) authz.Device {
	out := authz.Device{ID: d.ID, Fleet: d.Fleet, Profile: d.Profile, Status: string(d.Status),
		Active: d.Status == store.DeviceActive, Labels: d.Labels}
	if d.Cert == nil {
		return out
	}
	block, _ := pem.Decode([]byte(d.Cert.PEM))
	if block == nil {
		return out // no usable certificate: every request is denied
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		s.cfg.Log.Error("stored certificate does not parse", "device", d.ID, "serial", d.Cert.Serial, "err", err)
		return out
	}
	out.Roles = s.cfg.Roles.RolesOf(cert)
	out.CertSerial = d.Cert.Serial
	out.CertNotAfter = d.Cert.NotAfter
	out.CertFingerprint = sha256.Sum256(block.Bytes)
	return out
}
