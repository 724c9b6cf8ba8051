package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/series"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Traffic answers the dashboard charts: this replica's decision and
// enrollment counts per step (series.Series).
type Traffic interface {
	Snapshot(w series.Window) series.Snapshot
}

var _ Traffic = (*series.Series)(nil)

// Stats answers the dashboard's aggregate questions.
type Stats interface {
	CountDevices(ctx context.Context) ([]store.DeviceCount, error)
	ExpiringCertificates(ctx context.Context, before time.Time, limit int) ([]store.Certificate, error)
	DiscardedCertificates(ctx context.Context, limit int) ([]store.Certificate, error)
}

func (s *Server) stats(c echo.Context) error {
	counts, err := s.cfg.Stats.CountDevices(c.Request().Context())
	if err != nil {
		return err
	}
	var total int64
	byStatus := map[string]int64{}
	for _, st := range []store.DeviceStatus{store.DevicePending, store.DeviceActive, store.DeviceSuspended, store.DeviceRevoked} {
		byStatus[string(st)] = 0
	}
	fleets := []apitypes.FleetCount{}
	for _, n := range counts {
		total += n.Count
		byStatus[string(n.Status)] += n.Count
		// Counts arrive ordered by fleet, so one fleet's rows are adjacent.
		if len(fleets) == 0 || fleets[len(fleets)-1].Fleet != n.Fleet {
			fleets = append(fleets, apitypes.FleetCount{Fleet: n.Fleet, ByStatus: map[string]int64{}})
		}
		f := &fleets[len(fleets)-1]
		f.Total += n.Count
		f.ByStatus[string(n.Status)] += n.Count
	}
	return c.JSON(http.StatusOK, apitypes.Stats{Devices: apitypes.DeviceCounts{Total: total, ByStatus: byStatus, ByFleet: fleets},
		PolicyVersion: s.cfg.Decisions.PolicyVersion()})
}

// trafficSeries answers GET /stats/series?window=hour|day.
func (s *Server) trafficSeries(c echo.Context) error {
	w, err := series.ParseWindow(c.QueryParam("window"))
	if err != nil {
		return err
	}
	snap := s.cfg.Traffic.Snapshot(w)
	out := apitypes.TrafficSeries{Window: string(snap.Window), StepSeconds: int64(snap.Step / time.Second),
		Buckets: mapSlice(snap.Buckets, func(b series.Bucket) apitypes.TrafficCount {
			return apitypes.TrafficCount{Start: b.Start, Allow: b.Allow, Deny: b.Deny, Error: b.Error,
				Enrolled: b.Enrolled, Renewed: b.Renewed, EnrollFailed: b.EnrollFailed}
		}),
		DenyReasons: mapSlice(snap.DenyReasons, func(r series.ReasonCount) apitypes.ReasonCount { return apitypes.ReasonCount(r) }),
	}
	if !snap.SampledAt.IsZero() {
		at := snap.SampledAt.UTC()
		out.SampledAt = &at
	}
	return c.JSON(http.StatusOK, out)
}

// listCertificates lists active certificates expiring within a window
// (expiring_within, a Go duration, required: there is no listing of every
// certificate).
// listCertificates lists active certificates expiring within a window, or
// with discarded=true the discarded ones (signed for an enrollment or
// renewal that did not commit: revoked, never handed out).
func (s *Server) listCertificates(c echo.Context) error {
	within := c.QueryParam("expiring_within")
	switch discarded := c.QueryParam("discarded"); {
	case discarded == "true" && within != "":
		return fault.New(fault.InvalidArgument, "give expiring_within or discarded=true, not both")
	case discarded == "true":
		return s.listDiscarded(c)
	case discarded != "" && discarded != "false":
		return fault.New(fault.InvalidArgument, "discarded must be true or false")
	case within == "":
		return fault.New(fault.InvalidArgument, "expiring_within (e.g. 168h) or discarded=true is required")
	}
	d, err := parseDuration("expiring_within", within)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fault.New(fault.InvalidArgument, "expiring_within must be positive")
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	cs, err := s.cfg.Stats.ExpiringCertificates(c.Request().Context(), time.Now().Add(d), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.ExpiringCertificateList{Certificates: mapSlice(cs, func(c store.Certificate) apitypes.ExpiringCertificate {
		return apitypes.ExpiringCertificate{Serial: c.Serial, DeviceID: c.DeviceID, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Status: string(c.Status)}
	})})
}

// listDiscarded answers GET /api/v1/certificates?discarded=true.
func (s *Server) listDiscarded(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	cs, err := s.cfg.Stats.DiscardedCertificates(c.Request().Context(), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.ExpiringCertificateList{Certificates: mapSlice(cs, func(c store.Certificate) apitypes.ExpiringCertificate {
		r := c.RevocationReason
		return apitypes.ExpiringCertificate{Serial: c.Serial, DeviceID: c.DeviceID, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
			Status: string(c.Status), RevocationReason: &r, Discarded: true}
	})})
}

// recentDenies lists the decision core's last denies, newest first,
// optionally for one device. They live in memory: a restart forgets them.
func (s *Server) recentDenies(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	ds := s.cfg.Decisions.RecentDenies(c.QueryParam("device"), limit)
	return c.JSON(http.StatusOK, apitypes.DenyList{Denies: mapSlice(ds, func(d authz.DeniedRequest) apitypes.Deny {
		return apitypes.Deny{At: d.At, Device: d.Device, ClientID: d.ClientID, Action: string(d.Action), Topic: d.Topic,
			QoS: d.QoS, Retain: d.Retain, Reason: d.Reason, PolicyVersion: d.PolicyVersion, Error: d.Error}
	})})
}

// queryTime reads an optional RFC 3339 query parameter; absent is zero.
func queryTime(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fault.New(fault.InvalidArgument, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", name)
	}
	return t, nil
}
