package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

func viewRevocationJob(j store.RevocationJob) apitypes.RevocationJob {
	v := apitypes.RevocationJob{ID: j.ID, Kind: j.Kind, Reason: j.Reason, Note: j.Note, Actor: j.Actor, Status: string(j.Status),
		Total: j.Total, Done: j.Done, Revoked: j.Revoked, Cursor: j.Cursor, Error: j.Error,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
	if j.Kind == store.JobKindBatch {
		v.BatchID = j.Target
	}
	return v
}

// revokeBatch starts (or returns) the batch's revocation job: 202 while it
// runs, 200 when the batch's job had already finished.
func (s *Server) revokeBatch(c echo.Context) error {
	var b apitypes.RevokeRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	job, _, err := s.cfg.Revoke.RevokeBatch(c.Request().Context(), c.Param("id"), revoke.Request{Actor: actor(c), Reason: b.Reason, Note: b.Note})
	if err != nil {
		return err
	}
	status := http.StatusAccepted
	if job.Status == store.JobDone {
		status = http.StatusOK
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/revocation-jobs/"+job.ID)
	return c.JSON(status, viewRevocationJob(job))
}

func (s *Server) getRevocationJob(c echo.Context) error {
	j, err := s.cfg.Revoke.Job(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewRevocationJob(j))
}

func (s *Server) listRevocationJobs(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	js, err := s.cfg.Revoke.Jobs(c.Request().Context(), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.RevocationJobList{Jobs: mapSlice(js, viewRevocationJob)})
}
