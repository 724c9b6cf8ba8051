// Package kick cuts a revoked or suspended device's live broker sessions.
//
// Denying a device's next broker request is not enough: a broker keeps a
// connection it authorized earlier open until the device leaves. Kick
// records one durable request per configured broker (store.SessionKick) and
// wakes the worker (Run), which tells each broker to disconnect the device:
// RabbitMQ through its management API, EMQX through its REST API, anything
// else through a signed HTTP hook. A failed delivery is retried with
// exponential backoff; after Retry.Attempts tries the kick is marked failed
// (visible per device in the API) and is still retried every Retry.Slow, so
// it is never silently dropped. Replicas sharing a database share the
// queue: each row is leased by one worker at a time.
package kick

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/loop"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Store is the durable kick queue.
type Store interface {
	EnqueueKicks(ctx context.Context, deviceID, reason string, brokers []string, at time.Time) error
	ClaimKicks(ctx context.Context, brokers []string, now time.Time, lease time.Duration, limit int) ([]store.SessionKick, error)
	FinishKick(ctx context.Context, deviceID, broker string, gen int64, at time.Time) (bool, error)
	RetryKick(ctx context.Context, deviceID, broker string, gen int64, lastErr string, next time.Time, failed bool, at time.Time) (bool, error)
	CancelKicks(ctx context.Context, deviceID string, at time.Time) (int64, error)
}

// Request is one kick as a broker sees it.
type Request struct {
	Device string
	// Reason is the action that caused the kick, e.g. device.revoke.
	Reason string
	// At is when the kick was requested (not when this attempt runs).
	At time.Time
}

// Broker disconnects a device's sessions on one broker. Disconnect returns
// nil when the device has no session left there, including when it had none.
type Broker interface {
	Name() string
	Disconnect(ctx context.Context, r Request) error
}

// Local is a Broker that only some replicas can reach at a given moment (a
// Mosquitto plugin holds its event stream open to one replica). Here
// reports whether this replica can reach it now.
type Local interface {
	Here() bool
}

// Retry is the delivery retry policy.
type Retry struct {
	// Initial is the wait after the first failure, doubled after each
	// further one up to Max. Defaults 1s and 1m.
	Initial, Max time.Duration
	// Attempts is how many deliveries are tried before the kick is marked
	// failed (default 8: about 2 minutes with the default delays).
	Attempts int
	// Slow is the wait between the retries of a failed kick (default 10m).
	Slow time.Duration
}

// delay is the wait after the attempt-th failed delivery, and whether the
// kick has run out of fast retries.
func (r Retry) delay(attempt int) (time.Duration, bool) {
	if attempt >= r.Attempts {
		return r.Slow, true
	}
	d := r.Initial
	for i := 1; i < attempt && d < r.Max; i++ {
		d *= 2
	}
	return min(d, r.Max), false
}

// Config wires the service.
type Config struct {
	Store Store
	// Brokers are told to disconnect; their names must be unique. With none,
	// Kick records nothing.
	Brokers []Broker
	Log     *slog.Logger
	Now     func() time.Time
	Retry   Retry
	// Poll is how often the worker looks for due kicks besides being woken
	// by Kick: retries, and leases of a replica that died (default 1s).
	Poll time.Duration
	// Timeout bounds one delivery attempt (default 10s); Lease, the time a
	// claimed kick is reserved for this worker (default 3×Timeout).
	Timeout, Lease time.Duration
	// Concurrency caps parallel deliveries (default 8).
	Concurrency int
	// Elsewhere is how long a due kick for a Local broker this replica
	// cannot reach is left to the replica that can, before this one tries
	// it anyway (and fails, counting an attempt): a replica without the
	// plugin's stream must neither burn the kick's fast retries nor delay
	// it, and a plugin that streams nowhere must still end in a failed
	// kick (default 5s).
	Elsewhere time.Duration
	// CheckEvery is how often Run checks the targets again (Checker), so
	// a password changed at the broker, or an operator account added under
	// a name a device could have, shows before the next kick (default 5m).
	CheckEvery time.Duration
}

func (c *Config) setDefaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Retry.Initial <= 0 {
		c.Retry.Initial = time.Second
	}
	if c.Retry.Max <= 0 {
		c.Retry.Max = time.Minute
	}
	if c.Retry.Max < c.Retry.Initial {
		c.Retry.Max = c.Retry.Initial
	}
	if c.Retry.Attempts <= 0 {
		c.Retry.Attempts = 8
	}
	if c.Retry.Slow <= 0 {
		c.Retry.Slow = 10 * time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Lease <= c.Timeout {
		c.Lease = 3 * c.Timeout
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.CheckEvery <= 0 {
		c.CheckEvery = 5 * time.Minute
	}
	if c.Elsewhere <= 0 {
		c.Elsewhere = 5 * time.Second
	}
}

// Service records kicks and delivers them.
type Service struct {
	cfg     Config
	brokers map[string]Broker
	names   []string
	wake    *loop.Waker
	health  health
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("kick: Store is required")
	}
	cfg.setDefaults()
	s := &Service{cfg: cfg, brokers: map[string]Broker{}, wake: loop.NewWaker(), health: health{targets: map[string]*TargetHealth{}}}
	for _, b := range cfg.Brokers {
		if b == nil || b.Name() == "" {
			return nil, fault.New(fault.InvalidArgument, "kick: a broker has no name")
		}
		if _, dup := s.brokers[b.Name()]; dup {
			return nil, fault.New(fault.InvalidArgument, "kick: two brokers are named %q", b.Name())
		}
		s.brokers[b.Name()] = b
		s.names = append(s.names, b.Name())
		s.health.targets[b.Name()] = &TargetHealth{Broker: b.Name(), Status: TargetUnchecked}
	}
	return s, nil
}

// Brokers names the configured brokers.
func (s *Service) Brokers() []string { return append([]string(nil), s.names...) }

// Kick records a request to cut deviceID's sessions on every broker and
// wakes the worker; delivery follows at once, in the background.
func (s *Service) Kick(ctx context.Context, deviceID, reason string) error {
	if len(s.names) == 0 {
		return nil
	}
	if err := s.cfg.Store.EnqueueKicks(ctx, deviceID, reason, s.names, s.cfg.Now()); err != nil {
		return err
	}
	s.wake.Wake()
	return nil
}

// Cancel drops deviceID's undelivered kicks: the device was reinstated, and
// a late retry must not cut the sessions it opens from now on.
func (s *Service) Cancel(ctx context.Context, deviceID string) error {
	if len(s.names) == 0 {
		return nil
	}
	_, err := s.cfg.Store.CancelKicks(ctx, deviceID, s.cfg.Now())
	return err
}

// Run delivers due kicks until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if len(s.names) == 0 {
		<-ctx.Done()
		return nil
	}
	// serve checked the targets just before Run starts.
	checked := s.cfg.Now()
	loop.RunNow(ctx, s.cfg.Poll, s.wake.C(), func(ctx context.Context) {
		s.DeliverDue(ctx)
		if now := s.cfg.Now(); now.Sub(checked) >= s.cfg.CheckEvery {
			checked = now
			_ = s.CheckTargets(ctx) // logged and recorded; a running server keeps running
		}
	})
	return nil
}

// DeliverDue claims and delivers due kicks until none is left, and returns
// how many it delivered (successfully or not).
func (s *Service) DeliverDue(ctx context.Context) int {
	total := 0
	limit := 4 * s.cfg.Concurrency
	for ctx.Err() == nil {
		ks, err := s.claim(ctx, limit)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Log.Error("session kick queue unreadable", "err", err)
			}
			return total
		}
		if len(ks) == 0 {
			return total
		}
		sem := make(chan struct{}, s.cfg.Concurrency)
		var wg sync.WaitGroup
		for _, k := range ks {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.deliver(ctx, k)
			}()
		}
		wg.Wait()
		total += len(ks)
		if len(ks) < limit {
			return total
		}
	}
	return total
}

// claim leases due kicks: at once for the brokers this replica reaches, and
// for Local brokers it cannot reach only once they are Elsewhere overdue
// (claimed as of Elsewhere ago, so the lease still ends Lease from now).
func (s *Service) claim(ctx context.Context, limit int) ([]store.SessionKick, error) {
	var here, away []string
	for _, n := range s.names {
		if l, ok := s.brokers[n].(Local); ok && !l.Here() {
			away = append(away, n)
		} else {
			here = append(here, n)
		}
	}
	now := s.cfg.Now()
	ks, err := s.cfg.Store.ClaimKicks(ctx, here, now, s.cfg.Lease, limit)
	if err != nil || len(ks) >= limit || len(away) == 0 {
		return ks, err
	}
	late, err := s.cfg.Store.ClaimKicks(ctx, away, now.Add(-s.cfg.Elsewhere), s.cfg.Lease+s.cfg.Elsewhere, limit-len(ks))
	if err != nil && len(ks) > 0 {
		// What is leased already is delivered; the rest waits for the next pass.
		s.cfg.Log.Error("session kick queue unreadable", "err", err)
		return ks, nil
	}
	return append(ks, late...), err
}

// deliver makes one attempt and records its outcome.
func (s *Service) deliver(ctx context.Context, k store.SessionKick) {
	b := s.brokers[k.Broker]
	log := s.cfg.Log.With("device", k.DeviceID, "broker", k.Broker, "reason", k.Reason, "attempt", k.Attempts)
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err := b.Disconnect(actx, Request{Device: k.DeviceID, Reason: k.Reason, At: k.RequestedAt})
	cancel()
	// The outcome is recorded even when the worker is stopping, so a
	// delivered kick is not delivered again by another replica.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer rcancel()
	now := s.cfg.Now()
	if err == nil {
		// A delivery proves the credentials: a target that failed its
		// check recovers here too.
		if _, ok := b.(Checker); ok && s.health.delivered(k.Broker, now) {
			log.Info("kick target verified by a delivery")
		}
		if _, ferr := s.cfg.Store.FinishKick(rctx, k.DeviceID, k.Broker, k.Generation, now); ferr != nil {
			log.Error("session kick delivered, but its status was not saved", "err", ferr)
			return
		}
		log.Info("session kick delivered", "since_request", now.Sub(k.RequestedAt).Round(time.Millisecond))
		return
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("interrupted by shutdown: %w", err)
	}
	wait, failed := s.cfg.Retry.delay(k.Attempts)
	if _, rerr := s.cfg.Store.RetryKick(rctx, k.DeviceID, k.Broker, k.Generation, err.Error(), now.Add(wait), failed, now); rerr != nil {
		log.Error("session kick failed, and its status was not saved; retried when its lease ends", "err", err, "save_err", rerr)
		return
	}
	s.recheckAfterFailure(rctx, k.Broker)
	if failed {
		log.Error("session kick failed; retrying slowly", "err", err, "next_in", wait)
	} else {
		log.Warn("session kick failed; retrying", "err", err, "next_in", wait)
	}
}
