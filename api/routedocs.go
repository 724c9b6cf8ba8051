package api

import (
	"net/http"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// routeDocs describes every /api/v1 route of routes.go, keyed "METHOD
// path" as echo registers it. New refuses to build a server with a route
// missing here or an entry no route matches, so the OpenAPI document
// (openapi.go) can never fall behind the route table.
//
// Each entry names the request and response types (from apitypes; the
// schemas are derived from them) and the fault codes the handler's
// services return beyond the ones every route can (errorCodes adds those:
// bad text, authentication, body size, internal, unavailable).
var routeDocs = map[string]routeDoc{
	"POST /api/v1/enroll": {summary: "Enroll a device with a bootstrap token and a CSR", req: apitypes.EnrollRequest{},
		resps: []resp{{http.StatusCreated, apitypes.EnrollResponse{}}, {http.StatusOK, apitypes.EnrollResponse{}}},
		faults: []fault.Code{fault.TokenInvalid, fault.TokenUsed, fault.TokenExpired, fault.TokenRevoked, fault.CSRInvalid,
			fault.KeyTypeNotAllowed, fault.DeviceIDReserved, fault.AlreadyExists, fault.NotFound, fault.Conflict}},
	"POST /api/v1/renew": {summary: "Renew a device certificate (mutual TLS or a challenge in the CSR)", req: apitypes.RenewRequest{},
		resps: []resp{{http.StatusCreated, apitypes.EnrollResponse{}}},
		faults: []fault.Code{fault.Unauthenticated, fault.CertInvalid, fault.CSRInvalid, fault.KeyTypeNotAllowed, fault.ChallengeRequired,
			fault.ChallengeInvalid, fault.ChallengeExpired, fault.RenewalTooEarly, fault.DeviceNotActive, fault.NotFound, fault.Conflict}},
	"POST /api/v1/renew/challenge": {summary: "Get a single-use renewal challenge", req: apitypes.RenewChallengeRequest{},
		resps:  []resp{{http.StatusCreated, apitypes.RenewChallengeResponse{}}},
		faults: []fault.Code{fault.Unauthenticated, fault.CertInvalid, fault.DeviceNotActive, fault.NotFound}},
	"GET /api/v1/ca/root":      {summary: "The root CA certificate (PEM)", resps: []resp{{http.StatusOK, pemBody}}},
	"GET /api/v1/ca/chain":     {summary: "The issuing CA chain (PEM)", resps: []resp{{http.StatusOK, pemBody}}},
	"GET /api/v1/version":      {summary: "The server version", resps: []resp{{http.StatusOK, apitypes.Version{}}}},
	"GET /api/v1/openapi.json": {summary: "This document (OpenAPI 3.1)", resps: []resp{{http.StatusOK, openAPIBody}}},

	"GET /api/v1/fleets":          {summary: "List fleets", who: viewer, resps: okJSON(apitypes.FleetList{})},
	"GET /api/v1/fleets/:name":    {summary: "Get a fleet", who: viewer, resps: okJSON(apitypes.Fleet{}), faults: notFound},
	"POST /api/v1/fleets":         {summary: "Create a fleet", who: operator, req: apitypes.FleetRequest{}, resps: created(apitypes.Fleet{}), faults: exists},
	"PATCH /api/v1/fleets/:name":  {summary: "Change a fleet's description", who: operator, req: apitypes.FleetUpdate{}, resps: okJSON(apitypes.Fleet{}), faults: notFound},
	"DELETE /api/v1/fleets/:name": {summary: "Delete an empty fleet", who: operator, resps: noContent, faults: inUse},

	"GET /api/v1/fleets/:fleet/idevid-vendors": {summary: "List a fleet's IDevID vendors (no PEMs)", who: viewer,
		resps: okJSON(apitypes.IDevIDVendorList{}), faults: notFound},
	"GET /api/v1/fleets/:fleet/idevid-vendors/:vendor": {summary: "Get an IDevID vendor, with its PEMs", who: viewer,
		resps: okJSON(apitypes.IDevIDVendor{}), faults: notFound},
	"POST /api/v1/fleets/:fleet/idevid-vendors": {summary: "Register a vendor PKI whose IDevIDs enroll into the fleet", who: admin,
		req: apitypes.IDevIDVendorRequest{}, resps: created(apitypes.IDevIDVendor{}), faults: []fault.Code{fault.AlreadyExists, fault.NotFound, fault.Conflict}},
	"PATCH /api/v1/fleets/:fleet/idevid-vendors/:vendor": {summary: "Change an IDevID vendor (conflict: another registration has one of its CA keys, or it changed meanwhile)", who: admin,
		req: apitypes.IDevIDVendorUpdate{}, resps: okJSON(apitypes.IDevIDVendor{}), faults: inUse},
	"DELETE /api/v1/fleets/:fleet/idevid-vendors/:vendor": {summary: "Delete an IDevID vendor with its CRLs and allow-list", who: admin,
		resps: noContent, faults: notFound},
	"PUT /api/v1/fleets/:fleet/idevid-vendors/:vendor/crls": {summary: "Import a vendor CRL (PEM or DER); an older one than stored is refused", who: admin,
		req: crlBody, resps: okJSON(apitypes.VendorCRL{}), faults: inUse},
	"PUT /api/v1/fleets/:fleet/idevid-vendors/:vendor/allowlist": {summary: "Replace a vendor's allow-list of IDevID serials (CSV)", who: admin,
		req: csvBody, resps: okJSON(apitypes.AllowListResult{}), faults: notFound},

	"GET /api/v1/profiles":          {summary: "List profiles", who: viewer, resps: okJSON(apitypes.ProfileList{})},
	"GET /api/v1/profiles/:name":    {summary: "Get a profile", who: viewer, resps: okJSON(apitypes.Profile{}), faults: notFound},
	"POST /api/v1/profiles":         {summary: "Create a profile", who: operator, req: apitypes.ProfileRequest{}, resps: created(apitypes.Profile{}), faults: exists},
	"PUT /api/v1/profiles/:name":    {summary: "Replace a profile", who: operator, req: apitypes.ProfileRequest{}, resps: okJSON(apitypes.Profile{}), faults: notFound},
	"DELETE /api/v1/profiles/:name": {summary: "Delete an unused profile", who: operator, resps: noContent, faults: inUse},

	"GET /api/v1/devices": {summary: "List devices, paged by id", who: viewer, resps: okJSON(apitypes.DeviceList{}),
		query: []queryParam{{"fleet", "string", false}, {"status", "string", false}, {"q", "string", false}, {"label", "string", false}, {"after", "string", false}, {"limit", "integer", false}}},
	"GET /api/v1/devices/:id":              {summary: "Get a device", who: viewer, resps: okJSON(apitypes.Device{}), faults: notFound},
	"GET /api/v1/devices/:id/certificates": {summary: "A device's certificates", who: viewer, resps: okJSON(apitypes.CertificateList{}), faults: notFound},
	"POST /api/v1/devices": {summary: "Register a device", who: operator, req: apitypes.DeviceRequest{}, resps: created(apitypes.Device{}),
		faults: []fault.Code{fault.AlreadyExists, fault.NotFound, fault.DeviceIDReserved, fault.Conflict}},
	"PATCH /api/v1/devices/:id":  {summary: "Change a device's profile or labels", who: operator, req: apitypes.DeviceUpdate{}, resps: okJSON(apitypes.Device{}), faults: inUse},
	"DELETE /api/v1/devices/:id": {summary: "Delete a device", who: operator, resps: noContent, faults: inUse},

	"GET /api/v1/token-batches":     {summary: "List token batches", who: viewer, resps: okJSON(apitypes.TokenBatchList{}), query: limitOnly},
	"GET /api/v1/token-batches/:id": {summary: "Get a token batch", who: viewer, resps: okJSON(apitypes.TokenBatch{}), faults: notFound},
	"POST /api/v1/token-batches": {summary: "Create bootstrap tokens (their only copy: JSON, or CSV with ?format=csv)", who: operator,
		req: apitypes.BatchRequest{}, resps: []resp{{http.StatusCreated, apitypes.BatchResponse{}}, {http.StatusCreated, csvBody}},
		query: []queryParam{{"format", "string", false}}, faults: []fault.Code{fault.NotFound, fault.Conflict}},

	"GET /api/v1/audit": {summary: "Audit events, newest first", who: viewer, resps: okJSON(apitypes.AuditEventList{}),
		query: []queryParam{{"object_type", "string", false}, {"object_id", "string", false}, {"actor", "string", false}, {"action", "string", false},
			{"since", "date-time", false}, {"until", "date-time", false}, {"limit", "integer", false}}},
	"GET /api/v1/audit/verify": {summary: "Verify the audit hash chain", who: viewer, resps: okJSON(apitypes.AuditVerification{}),
		query: []queryParam{{"since", "date-time", false}}, faults: []fault.Code{fault.Unavailable}},

	"GET /api/v1/stats": {summary: "Device counts for the dashboard", who: viewer, resps: okJSON(apitypes.Stats{})},
	"GET /api/v1/stats/series": {summary: "This replica's decisions and enrollments per minute or hour (dashboard charts)", who: viewer,
		resps: okJSON(apitypes.TrafficSeries{}), query: []queryParam{{"window", "string", false}}},
	"GET /api/v1/certificates": {summary: "Active certificates expiring within a window, or (discarded=true) discarded ones", who: viewer,
		resps: okJSON(apitypes.ExpiringCertificateList{}),
		query: []queryParam{{"expiring_within", "string", false}, {"discarded", "boolean", false}, {"limit", "integer", false}}},
	"GET /api/v1/decisions/recent-denies": {summary: "The decision core's last denies (in memory)", who: viewer, resps: okJSON(apitypes.DenyList{}),
		query: []queryParam{{"device", "string", false}, {"limit", "integer", false}}},

	"POST /api/v1/devices/:id/revoke":    {summary: "Revoke a device and its certificates", who: operator, req: apitypes.RevokeRequest{}, resps: okJSON(apitypes.DeviceRevocation{}), faults: inUse},
	"POST /api/v1/devices/:id/suspend":   {summary: "Suspend a device", who: operator, req: apitypes.RevokeRequest{}, resps: okJSON(apitypes.DeviceResult{}), faults: inUse},
	"POST /api/v1/devices/:id/reinstate": {summary: "Reinstate a suspended device", who: operator, req: apitypes.RevokeRequest{}, resps: okJSON(apitypes.DeviceResult{}), faults: inUse},
	"POST /api/v1/certificates/:serial/revoke": {summary: "Revoke one certificate", who: operator, req: apitypes.RevokeRequest{},
		resps: okJSON(apitypes.CertificateResult{}), faults: inUse},
	"POST /api/v1/token-batches/:id/revoke": {summary: "Revoke a token batch and, in a job, its devices", who: operator, req: apitypes.RevokeRequest{},
		resps: []resp{{http.StatusAccepted, apitypes.RevocationJob{}}, {http.StatusOK, apitypes.RevocationJob{}}}, faults: inUse},
	"GET /api/v1/revocation-jobs":     {summary: "List revocation jobs", who: viewer, resps: okJSON(apitypes.RevocationJobList{}), query: limitOnly},
	"GET /api/v1/revocation-jobs/:id": {summary: "Get a revocation job", who: viewer, resps: okJSON(apitypes.RevocationJob{}), faults: notFound},

	"GET /api/v1/policies": {summary: "List policy versions", who: viewer, resps: okJSON(apitypes.PolicyVersionList{})},
	"GET /api/v1/policies/diff": {summary: "Diff two policy versions", who: viewer, resps: okJSON(apitypes.PolicyDiff{}), faults: notFound,
		query: []queryParam{{"from", "integer", true}, {"to", "integer", true}}},
	"GET /api/v1/policies/:version": {summary: "Get a policy version", who: viewer, resps: okJSON(apitypes.PolicyVersion{}), faults: notFound},
	"POST /api/v1/policies": {summary: "Store a new policy version", who: operator, req: apitypes.PolicySource{}, resps: created(apitypes.PolicyVersion{}),
		faults: []fault.Code{policy.Invalid}},
	"POST /api/v1/policies/validate": {summary: "Compile a policy without storing it", who: operator, req: apitypes.PolicySource{},
		resps: okJSON(apitypes.PolicyValidation{}), faults: []fault.Code{policy.Invalid}},
	"POST /api/v1/policies/:version/test": {summary: "Run a version's tests", who: operator, resps: okJSON(apitypes.PolicyTestReport{}),
		faults: []fault.Code{fault.NotFound, policy.Invalid, policy.EvalFailed, policy.Timeout}},
	// A refused activation answers 422 with the test report beside the error.
	"POST /api/v1/policies/:version/activate": {summary: "Activate a version (its tests must pass)", who: admin,
		resps:  []resp{{http.StatusOK, apitypes.PolicyActivation{}}, {http.StatusUnprocessableEntity, apitypes.PolicyActivationRefused{}}},
		faults: []fault.Code{fault.NotFound, fault.Conflict, policy.Invalid, policy.EvalFailed, policy.Timeout}},
	"POST /api/v1/decisions/simulate": {summary: "What-if: decide a request against a policy version", who: viewer, req: apitypes.SimulateRequest{},
		resps: okJSON(apitypes.SimulateResponse{}), faults: []fault.Code{fault.NotFound, policy.Invalid, policy.EvalFailed}},

	"GET /api/v1/devices/:id/sessions": {summary: "A device's latest session kick per broker", who: viewer, resps: okJSON(apitypes.DeviceSessions{}), faults: notFound},
	"GET /api/v1/session-kicks": {summary: "Session kicks and kick targets", who: viewer, resps: okJSON(apitypes.SessionKickList{}),
		query: []queryParam{{"status", "string", false}, {"limit", "integer", false}}},
	"GET /api/v1/crl": {summary: "The installed CRL and its upkeep", who: viewer, resps: okJSON(apitypes.CRLStatus{})},

	"POST /api/v1/session": {summary: "Sign in (web UI): sets the session cookie", req: apitypes.LoginRequest{}, resps: okJSON(apitypes.Session{}),
		faults: []fault.Code{fault.Unauthenticated, fault.CSRFFailed, auth.LoginThrottled}},
	"GET /api/v1/session":           {summary: "The current session", who: signedIn, resps: okJSON(apitypes.Session{})},
	"DELETE /api/v1/session":        {summary: "Sign out", who: signedIn, resps: noContent},
	"POST /api/v1/session/password": {summary: "Change one's own password", who: signedIn, req: apitypes.PasswordChange{}, resps: noContent},
	"GET /api/v1/users":             {summary: "List web UI users", who: admin, resps: okJSON(apitypes.UserList{})},
	"POST /api/v1/users":            {summary: "Create a web UI user", who: admin, req: apitypes.UserRequest{}, resps: created(apitypes.User{}), faults: exists},
	"GET /api/v1/users/:username":   {summary: "Get a web UI user", who: admin, resps: okJSON(apitypes.User{}), faults: notFound},
	"PATCH /api/v1/users/:username": {summary: "Change a user's role, password or disabled flag", who: admin, req: apitypes.UserUpdate{},
		resps: okJSON(apitypes.User{}), faults: inUse},
	"DELETE /api/v1/users/:username": {summary: "Delete a web UI user", who: admin, resps: noContent, faults: inUse},
}

// routeDoc describes one route for the OpenAPI document.
type routeDoc struct {
	summary string
	who     caller
	query   []queryParam
	// req is the zero value of the JSON request body's type; nil for none.
	req    any
	resps  []resp
	faults []fault.Code
}

// resp is one success answer: a status and the zero value of its body's
// type (nil: no body; pemBody, csvBody, openAPIBody: not apitypes JSON).
type resp struct {
	status int
	body   any
}

// queryParam is one query parameter; typ is "string", "integer" or
// "date-time".
type queryParam struct {
	name     string
	typ      string
	required bool
}

// caller says what a route requires of its caller.
type caller int

const (
	anyone   caller = iota // no credentials: device-facing or public
	signedIn               // a web UI session of any role
	viewer
	operator
	admin
)

// role is the minimum role of a role-checked route, "" for the others.
func (c caller) role() auth.Role {
	switch c {
	case viewer:
		return auth.RoleViewer
	case operator:
		return auth.RoleOperator
	case admin:
		return auth.RoleAdmin
	}
	return ""
}

// Non-JSON bodies.
type (
	pemDoc     struct{}
	csvDoc     struct{}
	crlDoc     struct{} // a request body: a CRL, PEM or DER
	openAPIDoc struct{}
)

var (
	pemBody     = pemDoc{}
	csvBody     = csvDoc{}
	crlBody     = crlDoc{}
	openAPIBody = openAPIDoc{}

	noContent = []resp{{http.StatusNoContent, nil}}
	limitOnly = []queryParam{{"limit", "integer", false}}
	notFound  = []fault.Code{fault.NotFound}
	exists    = []fault.Code{fault.AlreadyExists}
	// inUse: a change to something that may be missing or still referenced.
	inUse = []fault.Code{fault.NotFound, fault.Conflict}
)

func okJSON(body any) []resp  { return []resp{{http.StatusOK, body}} }
func created(body any) []resp { return []resp{{http.StatusCreated, body}} }
