package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/store"
)

// SessionKicks reads the live-session kick queue (package kick): per
// device and broker, whether the broker was told to cut the device's
// sessions after its revocation or suspension.
type SessionKicks interface {
	DeviceKicks(ctx context.Context, deviceID string) ([]store.SessionKick, error)
	ListKicks(ctx context.Context, f store.KickFilter) ([]store.SessionKick, error)
}

// KickTargets reports each configured kick target's last check (package
// kick): a wrong management password shows here, not only as one failed
// kick at a time.
type KickTargets interface {
	Targets() []kick.TargetHealth
}

type kickView struct {
	Device        string     `json:"device"`
	Broker        string     `json:"broker"`
	Status        string     `json:"status"`
	Reason        string     `json:"reason"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	RequestedAt   time.Time  `json:"requested_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	DoneAt        *time.Time `json:"done_at,omitempty"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func viewKick(k store.SessionKick) kickView {
	v := kickView{Device: k.DeviceID, Broker: k.Broker, Status: string(k.Status), Reason: k.Reason, Attempts: k.Attempts,
		LastError: k.LastError, RequestedAt: k.RequestedAt, DoneAt: k.DoneAt, UpdatedAt: k.UpdatedAt}
	if k.Status != store.KickDone {
		next := k.NextAttemptAt
		v.NextAttemptAt = &next
	}
	return v
}

// deviceSessions shows, per broker, the device's latest session kick. A
// device never kicked has none; an unknown device is 404 unless kicks were
// recorded for it before it was deleted.
func (s *Server) deviceSessions(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	ks, err := s.cfg.SessionKicks.DeviceKicks(ctx, id)
	if err != nil {
		return err
	}
	if len(ks) == 0 {
		if _, err := s.cfg.Inventory.GetDevice(ctx, id); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"device": id, "kicks": mapSlice(ks, viewKick)})
}

// listSessionKicks lists kicks, most recently changed first; ?status=failed
// shows the ones that need attention.
func (s *Server) listSessionKicks(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	status := store.KickStatus(c.QueryParam("status"))
	if status != "" && !status.Valid() {
		return fault.New(fault.InvalidArgument, "status must be pending, done, failed or cancelled")
	}
	ks, err := s.cfg.SessionKicks.ListKicks(c.Request().Context(), store.KickFilter{Status: status, Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"kicks": mapSlice(ks, viewKick), "targets": s.cfg.KickTargets.Targets()})
}
