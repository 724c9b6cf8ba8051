package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Decisions is the live decision core, read by the simulator, the
// dashboard (active version) and the recent-denies list.
type Decisions interface {
	Device(id string) (authz.Device, bool)
	PolicyVersion() int64
	Simulate(ctx context.Context, p *policy.Policy, version int64, dev authz.Device, req authz.Request) (authz.Decision, error)
	// RecentDenies is the core's last denies, newest first (in memory).
	RecentDenies(device string, limit int) []authz.DeniedRequest
}

func (s *Server) viewPolicy(v store.PolicyVersion) apitypes.PolicyVersion {
	return apitypes.PolicyVersion{Version: v.Version, Policy: v.Policy, Tests: v.Tests, Digest: v.Digest, Comment: v.Comment,
		CreatedBy: v.CreatedBy, CreatedAt: v.CreatedAt, Active: v.Version == s.cfg.Decisions.PolicyVersion()}
}

// viewTestReport copies a policy test report into its apitypes mirror,
// keeping nil Results as null.
func viewTestReport(r policy.TestReport) apitypes.PolicyTestReport {
	v := apitypes.PolicyTestReport{Passed: r.Passed, Failed: r.Failed}
	if r.Results != nil {
		v.Results = mapSlice(r.Results, func(t policy.TestResult) apitypes.PolicyTestResult {
			return apitypes.PolicyTestResult{Name: t.Name, Passed: t.Passed, Error: t.Error, Line: t.Line, Duration: t.Duration}
		})
	}
	return v
}

func versionParam(c echo.Context, name string) (int64, error) {
	v, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || v <= 0 {
		return 0, fault.New(fault.InvalidArgument, "%s must be a positive version number", name)
	}
	return v, nil
}

func (s *Server) listPolicies(c echo.Context) error {
	vs, err := s.cfg.PolicyVersions.ListPolicyVersions(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.PolicyVersionList{Versions: mapSlice(vs, s.viewPolicy), Active: s.cfg.Decisions.PolicyVersion()})
}

func (s *Server) getPolicy(c echo.Context) error {
	v, err := versionParam(c, "version")
	if err != nil {
		return err
	}
	pv, err := s.cfg.PolicyVersions.GetPolicyVersion(c.Request().Context(), v)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.viewPolicy(pv))
}

func (s *Server) createPolicy(c echo.Context) error {
	var b apitypes.PolicySource
	if err := decode(c, &b); err != nil {
		return err
	}
	pv, err := s.cfg.Policies.Create(c.Request().Context(), actor(c), policy.Source{Policy: b.Policy, Tests: b.Tests}, b.Comment)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, s.viewPolicy(pv))
}

func (s *Server) validatePolicy(c echo.Context) error {
	var b apitypes.PolicySource
	if err := decode(c, &b); err != nil {
		return err
	}
	if err := s.cfg.Policies.Validate(c.Request().Context(), policy.Source{Policy: b.Policy, Tests: b.Tests}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.PolicyValidation{Valid: true})
}

func (s *Server) testPolicy(c echo.Context) error {
	v, err := versionParam(c, "version")
	if err != nil {
		return err
	}
	rep, err := s.cfg.Policies.Test(c.Request().Context(), v)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewTestReport(rep))
}

func (s *Server) activatePolicy(c echo.Context) error {
	v, err := versionParam(c, "version")
	if err != nil {
		return err
	}
	rep, err := s.cfg.Policies.Activate(c.Request().Context(), actor(c), v)
	if err != nil {
		if fault.Is(err, policy.TestsFailed) {
			return c.JSON(statusOf(policy.TestsFailed), apitypes.PolicyActivationRefused{Error: apitypes.ErrorDetail{Code: policy.TestsFailed,
				Message: fault.MessageOf(err)}, Tests: viewTestReport(rep)})
		}
		return err
	}
	return c.JSON(http.StatusOK, apitypes.PolicyActivation{Active: v, Tests: viewTestReport(rep)})
}

func (s *Server) diffPolicies(c echo.Context) error {
	from, err := strconv.ParseInt(c.QueryParam("from"), 10, 64)
	if err != nil {
		return fault.New(fault.InvalidArgument, "from must be a version number")
	}
	to, err := strconv.ParseInt(c.QueryParam("to"), 10, 64)
	if err != nil {
		return fault.New(fault.InvalidArgument, "to must be a version number")
	}
	d, err := s.cfg.Policies.Diff(c.Request().Context(), from, to)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.PolicyDiff{From: from, To: to, Diff: d})
}

func (s *Server) simulate(c echo.Context) error {
	var b apitypes.SimulateRequest
	if err := decode(c, &b); err != nil {
		return err
	}
	ctx := c.Request().Context()
	dev, ok := s.cfg.Decisions.Device(b.Device)
	if !ok {
		return fault.New(fault.NotFound, "device %s is not known to the decision core", b.Device)
	}
	version := b.Version
	if version == 0 {
		version = s.cfg.Decisions.PolicyVersion()
	}
	p, _, err := s.cfg.Policies.Compiled(ctx, version)
	if err != nil {
		return err
	}
	// A cut-off evaluation answers 200 with the live core's deny
	// (reason policy_timeout); a policy that fails to evaluate answers 422
	// policy_eval_failed.
	d, err := s.cfg.Decisions.Simulate(ctx, p, version, dev, authz.Request{Action: authz.Action(b.Action), Topic: b.Topic,
		QoS: b.QoS, Retain: b.Retain})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apitypes.SimulateResponse{Allow: d.Allow, Reason: d.Reason, Rule: d.Rule,
		PolicyVersion: version, Device: dev.ID})
}
