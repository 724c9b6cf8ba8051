package kick

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Checker is a Broker that can verify its address and credentials without
// disconnecting anyone. A target whose credentials are wrong fails every
// kick; checking at start and after a failed delivery makes that visible
// (log, readiness detail, API) instead of one failed kick at a time.
type Checker interface {
	Check(ctx context.Context) error
}

// Target states.
const (
	TargetOK        = "ok"        // the last check (or delivery) succeeded
	TargetError     = "error"     // the last check failed: Error says why
	TargetUnchecked = "unchecked" // not checked yet, or the target cannot be checked (webhook)
)

// TargetHealth is what is known about one kick target's reachability and
// credentials.
type TargetHealth struct {
	Broker    string    `json:"broker"`
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// collision: the error is a CollisionError, which a delivery that
	// succeeds does not clear (it says nothing about user names).
	collision bool
}

// CollisionError says that the broker has operator accounts whose names
// could be device ids: a device enrolled under such a name would log in as
// the account (the broker's own user database is consulted before
// Gatehouse).
type CollisionError struct {
	Broker string
	Users  []string
}

func (e *CollisionError) Error() string {
	return fmt.Sprintf("%s: internal users %q could be device ids; a device certificate with such a name would log in as that user "+
		"(rename them so they contain '@', which no device id may)", e.Broker, e.Users)
}

// health tracks target states.
type health struct {
	mu      sync.Mutex
	targets map[string]*TargetHealth
}

func (h *health) set(name, status string, err error, at time.Time) (changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.targets[name]
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	changed = t.Status != status || t.Error != msg
	var ce *CollisionError
	t.Status, t.Error, t.CheckedAt, t.collision = status, msg, at, errors.As(err, &ce)
	return changed
}

// delivered records a successful delivery, which proves the credentials;
// it reports whether the state changed.
func (h *health) delivered(name string, at time.Time) bool {
	h.mu.Lock()
	collision := h.targets[name].collision
	h.mu.Unlock()
	if collision {
		return false
	}
	return h.set(name, TargetOK, nil, at)
}

func (h *health) get(name string) TargetHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return *h.targets[name]
}

// Targets reports each configured target's state, in configuration order.
func (s *Service) Targets() []TargetHealth {
	out := make([]TargetHealth, 0, len(s.names))
	for _, n := range s.names {
		out = append(out, s.health.get(n))
	}
	return out
}

// Degraded lists the targets whose last check failed, one line each, for
// the readiness probe.
func (s *Service) Degraded() []string {
	var out []string
	for _, t := range s.Targets() {
		if t.Status == TargetError {
			out = append(out, "kick target "+t.Broker+": "+t.Error)
		}
	}
	return out
}

// CheckTargets checks every target that can be checked, records and logs
// the outcome, and returns the first *CollisionError found (serve refuses
// to start on it); unreachable targets or wrong credentials are reported,
// not returned: the broker may come up after Gatehouse.
func (s *Service) CheckTargets(ctx context.Context) error {
	var collision error
	for _, n := range s.names {
		if err := s.check(ctx, n); err != nil && collision == nil {
			collision = err
		}
	}
	return collision
}

// check checks one target; it returns only a collision.
func (s *Service) check(ctx context.Context, name string) error {
	c, ok := s.brokers[name].(Checker)
	if !ok {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err := c.Check(cctx)
	cancel()
	if err == nil {
		if s.health.set(name, TargetOK, nil, s.cfg.Now()) {
			s.cfg.Log.Info("kick target verified", "broker", name)
		}
		return nil
	}
	s.health.set(name, TargetError, err, s.cfg.Now())
	s.cfg.Log.Error("kick target check failed: kicks to it will fail", "broker", name, "err", err)
	var ce *CollisionError
	if errors.As(err, &ce) {
		return err
	}
	return nil
}

// recheckAfterFailure checks a target again after a failed delivery, at
// most once per recheckEvery, so a wrong password shows as the target's
// state rather than only in each kick's last error.
func (s *Service) recheckAfterFailure(ctx context.Context, name string) {
	if _, ok := s.brokers[name].(Checker); !ok {
		return
	}
	if t := s.health.get(name); !t.CheckedAt.IsZero() && s.cfg.Now().Sub(t.CheckedAt) < recheckEvery {
		return
	}
	_ = s.check(ctx, name)
}

const recheckEvery = 10 * time.Second

// get sends an authenticated GET {base}{path}?{query} and returns the body
// of a 200 answer (up to 4 MiB: a user listing can be long).
func (a restAPI) get(ctx context.Context, path, query string) ([]byte, error) {
	u := *a.base
	u.Path = a.base.Path + path
	u.RawPath = ""
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(a.user, a.pass)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		if len(body) > 4096 {
			body = body[:4096]
		}
		return nil, fmt.Errorf("GET %s: %s%s", u.Redacted(), resp.Status, snippet(body))
	}
	return body, nil
}
