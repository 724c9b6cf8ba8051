package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
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

func viewKick(k store.SessionKick) apitypes.SessionKick {
	v := apitypes.SessionKick{Device: k.DeviceID, Broker: k.Broker, Status: string(k.Status), Reason: k.Reason, Attempts: k.Attempts,
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
	return c.JSON(http.StatusOK, apitypes.DeviceSessions{Device: id, Kicks: mapSlice(ks, viewKick)})
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
	return c.JSON(http.StatusOK, apitypes.SessionKickList{Kicks: mapSlice(ks, viewKick),
		Targets: viewKickTargets(s.cfg.KickTargets.Targets())})
}

// viewKickTargets keeps nil as nil (null), as the targets were rendered
// before apitypes mirrored kick.TargetHealth.
func viewKickTargets(ts []kick.TargetHealth) []apitypes.KickTarget {
	if ts == nil {
		return nil
	}
	return mapSlice(ts, func(t kick.TargetHealth) apitypes.KickTarget {
		return apitypes.KickTarget{Broker: t.Broker, Status: t.Status, Error: t.Error, CheckedAt: t.CheckedAt}
	})
}
