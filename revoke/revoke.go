// Package revoke takes access away: revoke a device, one certificate or
// every device of a token batch (RFC 5280 reasons), suspend and reinstate a
// device. Every change is committed with its audit event and pushed into
// this replica's decision core before the call returns, so the next broker
// request is denied. A batch is revoked by a background job (batch.go) in
// steps, each committed with its audit events, resumable on any replica.
package revoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/loop"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Reasons are RFC 5280 CRLReason codes by name.
var Reasons = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
}

// ReasonCode looks a reason name up; "" means unspecified.
func ReasonCode(name string) (int, error) {
	if name == "" {
		return 0, nil
	}
	code, ok := Reasons[name]
	if !ok {
		names := make([]string, 0, len(Reasons))
		for n := range Reasons {
			names = append(names, n)
		}
		sort.Strings(names)
		return 0, fault.New(fault.InvalidArgument, "reason %q is not one of %s", name, strings.Join(names, ", "))
	}
	return code, nil
}

// Store changes device and certificate state.
type Store interface {
	RevokeDevice(ctx context.Context, id string, reason int, at time.Time, audit *store.AuditEvent) ([]string, error)
	TransitionDevice(ctx context.Context, id string, from []store.DeviceStatus, to store.DeviceStatus, at time.Time, audit *store.AuditEvent) (store.Device, error)
	// RevokeCertificateAudited revokes a certificate and records the event
	// audit builds from it in one transaction: no revocation without its event.
	RevokeCertificateAudited(ctx context.Context, serial string, reason int, at time.Time, audit func(store.Certificate) store.AuditEvent) (store.Certificate, error)
}

// Core is this replica's decision state, refreshed after each change.
type Core interface {
	Sync(ctx context.Context) (int, error)
}

// CRL republishes the certificate revocation list after certificates are
// revoked. Publish returns once a list that includes every revocation
// committed before the call is served (and written to the CRL file, if one
// is configured).
type CRL interface {
	Publish(ctx context.Context) error
}

// Sessions cuts a device's live broker sessions: a revoked or suspended
// device must not keep a connection its broker authorized earlier. Kick
// records the request durably and returns; delivery to each broker is
// retried in the background and its status is visible per device.
//
// Cancel drops a device's kicks that are not delivered yet: after a
// reinstatement a late retry would cut the sessions the device opens anew.
type Sessions interface {
	Kick(ctx context.Context, deviceID, reason string) error
	Cancel(ctx context.Context, deviceID string) error
}

// Config wires the service.
type Config struct {
	Store Store
	Core  Core
	// CRL and Sessions are optional.
	CRL      CRL
	Sessions Sessions
	// Jobs records and runs bulk (batch) revocations. Required: every
	// replica runs batch jobs, so a service without it would answer a batch
	// revocation with an error only at the moment it is needed.
	Jobs JobStore
	// ChunkSize is how many devices one step of a bulk revocation revokes
	// in one transaction (default 500).
	ChunkSize int
	// Lease is how long a replica owns a bulk job between steps before
	// another may take it over (default 30s); PollInterval is how often
	// Run looks for jobs to take over (default 2s).
	Lease        time.Duration
	PollInterval time.Duration
	// CRLWait bounds how long a revoke call waits for the CRL that lists
	// it (default 15s). A list of a million entries takes seconds to sign,
	// and the call may queue behind a generation already running; past
	// CRLWait the call returns with a warning while the publication goes
	// on in the background, rather than hitting a client or server timeout
	// that would hide that the revocation is committed.
	CRLWait time.Duration
	// Owner names this replica in job leases (default: random).
	Owner string
	Log   *slog.Logger
	Now   func() time.Time
}

// Service revokes and suspends.
type Service struct {
	cfg Config
	// wake nudges Run when this replica starts a job, so it begins at once
	// instead of at the next poll.
	wake *loop.Waker
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	var missing []string
	for name, absent := range map[string]bool{"Store": cfg.Store == nil, "Core": cfg.Core == nil, "Jobs": cfg.Jobs == nil} {
		if absent {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, errors.New("revoke: missing " + strings.Join(missing, ", ") + " (required)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 500
	}
	if cfg.CRLWait <= 0 {
		cfg.CRLWait = 15 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = hex.EncodeToString(b[:])
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, wake: loop.NewWaker()}, nil
}

// Request names why and by whom.
type Request struct {
	Actor  string
	Reason string
	Note   string
}

func (r Request) detail(code int) string {
	d := fmt.Sprintf("reason=%s(%d)", r.Reason, code)
	if r.Note != "" {
		d += " note=" + r.Note
	}
	return d
}

func checkNote(note string) error {
	if len(note) > 1024 {
		return fault.New(fault.InvalidArgument, "note is longer than 1024 bytes")
	}
	return nil
}

// refresh pushes the committed change into the decision core. The change is
// already durable; if the refresh fails, the core's own poll applies it
// within its interval, and the caller is told.
func (s *Service) refresh(ctx context.Context) error {
	if _, err := s.cfg.Core.Sync(ctx); err != nil {
		return fault.Wrap(err, fault.Unavailable, "change saved, but the decision core did not refresh yet; it will within seconds")
	}
	return nil
}

// after runs the side effects that follow a committed change: the decision
// core first (that is what the next broker request sees), then the
// live-session kick and the CRL. The change is durable; every step is
// attempted, and those that failed are returned as a *Lagging so the caller
// knows what is still catching up without mistaking it for a failed change.
func (s *Service) after(ctx context.Context, deviceID, why string, crl bool) error {
	var ids []string
	if deviceID != "" {
		ids = []string{deviceID}
	}
	return s.afterMany(ctx, ids, why, crl)
}

// afterMany is after for several devices changed together (one step of a
// bulk revocation): one refresh and at most one CRL publication, and a kick
// for each device.
func (s *Service) afterMany(ctx context.Context, deviceIDs []string, why string, crl bool) error {
	errs := []error{s.refresh(ctx)}
	if s.cfg.Sessions != nil {
		// Every device is tried: one failed kick must not leave the
		// others' sessions running.
		var kickErr error
		for _, id := range deviceIDs {
			if err := s.cfg.Sessions.Kick(ctx, id, why); err != nil && kickErr == nil {
				kickErr = fault.Wrap(err, fault.Unavailable, "change saved, but the session kick of %s was not recorded", id)
			}
		}
		errs = append(errs, kickErr)
	}
	if crl && s.cfg.CRL != nil {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CRLWait)
		err := s.cfg.CRL.Publish(cctx)
		cancel()
		if err != nil {
			errs = append(errs, fault.Wrap(err, fault.Unavailable, "change saved, but the CRL was not republished yet; it is retried in the background"))
		}
	}
	return lagging(errs...)
}

// RevokeDevice revokes a device and all its certificates.
func (s *Service) RevokeDevice(ctx context.Context, id string, req Request) ([]string, error) {
	code, err := ReasonCode(req.Reason)
	if err != nil {
		return nil, err
	}
	if err := checkNote(req.Note); err != nil {
		return nil, err
	}
	if req.Reason == "" {
		req.Reason = "unspecified"
	}
	serials, err := s.cfg.Store.RevokeDevice(ctx, id, code, s.cfg.Now(), &store.AuditEvent{Actor: req.Actor,
		Action: "device.revoke", ObjectType: "device", ObjectID: id, Detail: req.detail(code)})
	if err != nil {
		return nil, err
	}
	return serials, s.after(ctx, id, "device.revoke", len(serials) > 0)
}

// RevokeCertificate revokes one certificate; if it was the device's current
// certificate, the device holds none until it enrolls again.
func (s *Service) RevokeCertificate(ctx context.Context, serial string, req Request) (store.Certificate, error) {
	code, err := ReasonCode(req.Reason)
	if err != nil {
		return store.Certificate{}, err
	}
	if err := checkNote(req.Note); err != nil {
		return store.Certificate{}, err
	}
	if req.Reason == "" {
		req.Reason = "unspecified"
	}
	c, err := s.cfg.Store.RevokeCertificateAudited(ctx, serial, code, s.cfg.Now(), func(c store.Certificate) store.AuditEvent {
		detail := "device=" + c.DeviceID + " " + req.detail(code)
		if c.Discarded {
			detail += " discarded=true"
		}
		return store.AuditEvent{Actor: req.Actor, Action: "certificate.revoke",
			ObjectType: "certificate", ObjectID: serial, Detail: detail}
	})
	if err != nil {
		return store.Certificate{}, err
	}
	if c.Discarded {
		// Revoked from the start and never handed out: nothing changed,
		// and its device (if it exists) holds another certificate, whose
		// sessions must not be kicked for this one.
		return c, nil
	}
	return c, s.after(ctx, c.DeviceID, "certificate.revoke", true)
}

// Suspend blocks an active device without touching its certificates or the CRL.
func (s *Service) Suspend(ctx context.Context, id string, req Request) (store.Device, error) {
	return s.transition(ctx, id, req, []store.DeviceStatus{store.DeviceActive}, store.DeviceSuspended, "device.suspend", true)
}

// Reinstate lifts a suspension.
func (s *Service) Reinstate(ctx context.Context, id string, req Request) (store.Device, error) {
	return s.transition(ctx, id, req, []store.DeviceStatus{store.DeviceSuspended}, store.DeviceActive, "device.reinstate", false)
}

func (s *Service) transition(ctx context.Context, id string, req Request, from []store.DeviceStatus, to store.DeviceStatus, action string, kick bool) (store.Device, error) {
	if err := checkNote(req.Note); err != nil {
		return store.Device{}, err
	}
	detail := ""
	if req.Note != "" {
		detail = "note=" + req.Note
	}
	d, err := s.cfg.Store.TransitionDevice(ctx, id, from, to, s.cfg.Now(), &store.AuditEvent{Actor: req.Actor,
		Action: action, ObjectType: "device", ObjectID: id, Detail: detail})
	if err != nil {
		return store.Device{}, err
	}
	if !kick {
		errs := []error{s.refresh(ctx)}
		if s.cfg.Sessions != nil {
			if cerr := s.cfg.Sessions.Cancel(ctx, id); cerr != nil {
				errs = append(errs, fault.Wrap(cerr, fault.Unavailable, "change saved, but pending session kicks were not cancelled"))
			}
		}
		return d, lagging(errs...)
	}
	return d, s.after(ctx, id, action, false)
}
