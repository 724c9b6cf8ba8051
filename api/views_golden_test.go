package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/vendors"
)

// TestViewShapes pins the JSON bytes of every view: the UI, the CLI and
// scripts read these field names, so a rename or a lost omitempty must
// fail here rather than in a browser.
func TestViewShapes(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := at.Add(time.Hour)
	grace := 30 * time.Minute
	tests := []struct {
		name string
		view any
		want string
	}{
		{"fleet", viewFleet(store.Fleet{Name: "f", Description: "d", CreatedAt: at, UpdatedAt: later}),
			`{"name":"f","description":"d","created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T04:04:05Z"}`},
		{"profile nil slices", viewProfile(store.Profile{Name: "p", Validity: 720 * time.Hour, RenewWindow: 240 * time.Hour, CreatedAt: at, UpdatedAt: at}),
			`{"name":"p","key_types":[],"validity":"720h0m0s","renew_window":"240h0m0s","superseded_grace":"1h0m0s","renew_after_expiry":"0s","roles":[],"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		{"profile", viewProfile(store.Profile{Name: "p", KeyTypes: []string{"P-256"}, Validity: time.Hour, RenewWindow: time.Minute, SupersededGrace: &grace, RenewAfterExpiry: new(30 * 24 * time.Hour), Roles: []string{"r"}, CreatedAt: at, UpdatedAt: at}),
			`{"name":"p","key_types":["P-256"],"validity":"1h0m0s","renew_window":"1m0s","superseded_grace":"30m0s","renew_after_expiry":"720h0m0s","roles":["r"],"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		{"device nil labels", viewDevice(store.Device{ID: "d1", Fleet: "f", Profile: "p", Status: store.DeviceActive, CreatedAt: at, UpdatedAt: at}),
			`{"id":"d1","fleet":"f","profile":"p","status":"active","identity":"urn:gatehouse:f:d1","labels":{},"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		{"certificate active", viewCert(store.Certificate{Serial: "01", Fingerprint: "ab", NotBefore: at, NotAfter: later, Status: store.CertActive, PEM: "PEM"}),
			`{"serial":"01","sha256_fingerprint":"ab","not_before":"2026-01-02T03:04:05Z","not_after":"2026-01-02T04:04:05Z","status":"active","certificate":"PEM"}`},
		{"certificate revoked", viewCert(store.Certificate{Serial: "01", Fingerprint: "ab", NotBefore: at, NotAfter: later, Status: store.CertRevoked, RevokedAt: &later, RevocationReason: 0, PEM: "PEM"}),
			`{"serial":"01","sha256_fingerprint":"ab","not_before":"2026-01-02T03:04:05Z","not_after":"2026-01-02T04:04:05Z","status":"revoked","revoked_at":"2026-01-02T04:04:05Z","revocation_reason":0,"certificate":"PEM"}`},
		{"batch", viewBatch(store.TokenBatch{ID: "b", Fleet: "f", Profile: "p", Count: 2, Used: 1, ExpiresAt: later, CreatedBy: "me", CreatedAt: at}),
			`{"id":"b","fleet":"f","profile":"p","count":2,"used":1,"expires_at":"2026-01-02T04:04:05Z","created_by":"me","created_at":"2026-01-02T03:04:05Z"}`},
		{"audit", viewAudit(store.AuditEvent{ID: "a", At: at, Actor: "me", Action: "x", ObjectType: "device", ObjectID: "d"}),
			`{"id":"a","at":"2026-01-02T03:04:05Z","actor":"me","action":"x","object_type":"device","object_id":"d"}`},
		{"revocation job", viewRevocationJob(store.RevocationJob{ID: "j", Kind: store.JobKindBatch, Target: "b", Reason: "keyCompromise", Actor: "me", Status: store.JobDone, Total: 3, Done: 3, Revoked: 2, CreatedAt: at, UpdatedAt: at}),
			`{"id":"j","kind":"batch","batch_id":"b","reason":"keyCompromise","actor":"me","status":"done","total":3,"done":3,"revoked":2,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		// These were map literals before apitypes: keys in alphabetical
		// order, which the structs keep.
		{"device revocation", apitypes.DeviceRevocation{Device: "d1", Status: "revoked", RevokedSerials: []string{}},
			`{"device":"d1","revoked_serials":[],"status":"revoked"}`},
		{"device revocation warnings", apitypes.DeviceRevocation{Device: "d1", Status: "revoked", RevokedSerials: []string{"01"}, Warnings: []string{"w"}},
			`{"device":"d1","revoked_serials":["01"],"status":"revoked","warnings":["w"]}`},
		{"device list", apitypes.DeviceList{Devices: []apitypes.Device{}}, `{"devices":[],"next":""}`},
		{"crl status empty", apitypes.CRLStatus{},
			`{"number":0,"this_update":null,"next_update":null,"entries":0,"file_written_at":null,"reload_command":false,"last_reload":null}`},
		{"idevid vendor in a list", viewVendor(vendors.Vendor{IDevIDVendor: store.IDevIDVendor{Fleet: "f", Name: "acme", Profile: "p",
			AnchorsPEM: "PEM", IDFrom: "serial_number", IDPrefix: "acme-", RequireAllowList: true, AllowListSize: 2, CreatedAt: at, UpdatedAt: later},
			Anchors: []vendors.Cert{{Subject: "CN=Acme Root", Fingerprint: "ab", NotAfter: later}},
			CRLList: []vendors.CRL{{Issuer: "CN=Acme Root", Number: "7", ThisUpdate: at, NextUpdate: later, Entries: 1, Stale: true}}}),
			`{"fleet":"f","name":"acme","profile":"p","id_from":"serial_number","id_prefix":"acme-","allow_reenroll":false,"require_allowlist":true,"anchors":[{"subject":"CN=Acme Root","sha256_fingerprint":"ab","not_after":"2026-01-02T04:04:05Z"}],"intermediates":[],"crls":[{"issuer":"CN=Acme Root","number":"7","this_update":"2026-01-02T03:04:05Z","next_update":"2026-01-02T04:04:05Z","entries":1,"stale":true}],"allowlist_size":2,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T04:04:05Z"}`},
		{"idevid vendor alone", viewVendorFull(vendors.Vendor{IDevIDVendor: store.IDevIDVendor{Fleet: "f", Name: "acme", Profile: "p",
			AnchorsPEM: "A", IntermediatesPEM: "I", IDFrom: "cn", AllowReenroll: true, CreatedAt: at, UpdatedAt: at}}),
			`{"fleet":"f","name":"acme","profile":"p","id_from":"cn","id_prefix":"","allow_reenroll":true,"require_allowlist":false,"anchors":[],"intermediates":[],"crls":[],"allowlist_size":0,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z","anchors_pem":"A","intermediates_pem":"I"}`},
		{"allow-list result", apitypes.AllowListResult{Fleet: "f", Vendor: "acme", Count: 3}, `{"fleet":"f","vendor":"acme","count":3}`},
		{"version", apitypes.Version{Version: "v1"}, `{"version":"v1"}`},
		// Results embed the view and add warnings at its end.
		{"certificate result", apitypes.CertificateResult{Certificate: viewCert(store.Certificate{Serial: "01", NotBefore: at, NotAfter: at, Status: store.CertActive}), Warnings: []string{"w"}},
			`{"serial":"01","sha256_fingerprint":"","not_before":"2026-01-02T03:04:05Z","not_after":"2026-01-02T03:04:05Z","status":"active","certificate":"","warnings":["w"]}`},
		{"device result", apitypes.DeviceResult{Device: viewDevice(store.Device{ID: "d1", Fleet: "f", Status: store.DeviceSuspended, Labels: map[string]string{"a": "b"}, CreatedAt: at, UpdatedAt: at})},
			`{"id":"d1","fleet":"f","profile":"","status":"suspended","identity":"urn:gatehouse:f:d1","labels":{"a":"b"},"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		{"error with problems", apitypes.ErrorBody{Error: apitypes.ErrorDetail{Code: "policy_invalid", Message: "m", Problems: problems([]policy.Problem{{Module: "policy", Line: 1, Column: 2, Message: "x"}})}},
			`{"error":{"code":"policy_invalid","message":"m","problems":[{"module":"policy","line":1,"column":2,"message":"x"}]}}`},
		{"error without problems", apitypes.ErrorBody{Error: apitypes.ErrorDetail{Code: "not_found", Message: "m", Problems: problems(nil)}},
			`{"error":{"code":"not_found","message":"m"}}`},
		// These were map literals or local view types before apitypes;
		// the bytes were pinned on that code first.
		// Sessions and users (session.go).
		{"session", viewSession(auth.Session{User: auth.User{Username: "ann", Role: auth.RoleAdmin}, CSRFToken: "c", ExpiresAt: at}),
			`{"user":{"username":"ann","role":"admin"},"csrf_token":"c","expires_at":"2026-01-02T03:04:05Z"}`},
		{"user", viewUser(auth.User{Username: "ann", Role: auth.RoleViewer, CreatedAt: at, UpdatedAt: at}),
			`{"username":"ann","role":"viewer","disabled":false,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		{"user disabled", viewUser(auth.User{Username: "ann", Role: auth.RoleViewer, CreatedAt: at, UpdatedAt: at, DisabledAt: &later, LastLoginAt: &at}),
			`{"username":"ann","role":"viewer","disabled":true,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z","disabled_at":"2026-01-02T04:04:05Z","last_login_at":"2026-01-02T03:04:05Z"}`},
		{"user list", apitypes.UserList{Users: mapSlice([]auth.User{}, viewUser)}, `{"users":[]}`},
		// Kicks (kicks.go).
		{"kick pending", viewKick(store.SessionKick{DeviceID: "d1", Broker: "emqx", Status: store.KickPending, Reason: "device.suspend", Attempts: 1, LastError: "e", NextAttemptAt: later, RequestedAt: at, UpdatedAt: at}),
			`{"device":"d1","broker":"emqx","status":"pending","reason":"device.suspend","attempts":1,"last_error":"e","requested_at":"2026-01-02T03:04:05Z","next_attempt_at":"2026-01-02T04:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		{"kick done", viewKick(store.SessionKick{DeviceID: "d1", Broker: "webhook", Status: store.KickDone, Reason: "device.revoke", Attempts: 1, NextAttemptAt: later, RequestedAt: at, DoneAt: &later, UpdatedAt: later}),
			`{"device":"d1","broker":"webhook","status":"done","reason":"device.revoke","attempts":1,"requested_at":"2026-01-02T03:04:05Z","done_at":"2026-01-02T04:04:05Z","updated_at":"2026-01-02T04:04:05Z"}`},
		{"device sessions", apitypes.DeviceSessions{Device: "d1", Kicks: mapSlice([]store.SessionKick{}, viewKick)}, `{"device":"d1","kicks":[]}`},
		{"kick targets nil", apitypes.SessionKickList{Kicks: []apitypes.SessionKick{}, Targets: viewKickTargets(nil)}, `{"kicks":[],"targets":null}`},
		{"kick list", apitypes.SessionKickList{Kicks: mapSlice([]store.SessionKick{}, viewKick), Targets: viewKickTargets([]kick.TargetHealth{{Broker: "emqx", Status: "ok"}, {Broker: "webhook", Status: "failing", Error: "e", CheckedAt: at}})},
			`{"kicks":[],"targets":[{"broker":"emqx","status":"ok"},{"broker":"webhook","status":"failing","error":"e","checked_at":"2026-01-02T03:04:05Z"}]}`},
		// Stats (stats.go).
		{"stats", apitypes.Stats{Devices: apitypes.DeviceCounts{Total: 2, ByStatus: map[string]int64{"active": 2, "pending": 0},
			ByFleet: []apitypes.FleetCount{{Fleet: "f", Total: 2, ByStatus: map[string]int64{"active": 2}}}}, PolicyVersion: 3},
			`{"devices":{"by_fleet":[{"fleet":"f","total":2,"by_status":{"active":2}}],"by_status":{"active":2,"pending":0},"total":2},"policy_version":3}`},
		{"expiring certificates", apitypes.ExpiringCertificateList{Certificates: []apitypes.ExpiringCertificate{{Serial: "01", DeviceID: "d1", NotBefore: at, NotAfter: later, Status: "active"}}},
			`{"certificates":[{"serial":"01","device_id":"d1","not_before":"2026-01-02T03:04:05Z","not_after":"2026-01-02T04:04:05Z","status":"active"}]}`},
		{"denies", apitypes.DenyList{Denies: []apitypes.Deny{{At: at, Device: "d1", Action: "connect", Reason: "r", PolicyVersion: 1},
			{At: at, Device: "d1", ClientID: "c", Action: "publish", Topic: "t", QoS: 1, Retain: true, Reason: "r", PolicyVersion: 1, Error: "e"}}},
			`{"denies":[{"at":"2026-01-02T03:04:05Z","device":"d1","action":"connect","qos":0,"retain":false,"reason":"r","policy_version":1},{"at":"2026-01-02T03:04:05Z","device":"d1","client_id":"c","action":"publish","topic":"t","qos":1,"retain":true,"reason":"r","policy_version":1,"error":"e"}]}`},
		{"traffic series", apitypes.TrafficSeries{Window: "hour", StepSeconds: 60, SampledAt: &later,
			Buckets:     []apitypes.TrafficCount{{Start: at, Allow: 1, Deny: 2, Error: 3, Enrolled: 4, Renewed: 5, EnrollFailed: 6}},
			DenyReasons: []apitypes.ReasonCount{{Reason: "no_grant", Count: 2}}},
			`{"window":"hour","step_seconds":60,"sampled_at":"2026-01-02T04:04:05Z","buckets":[{"start":"2026-01-02T03:04:05Z","allow":1,"deny":2,"error":3,"enrolled":4,"renewed":5,"enroll_failed":6}],"deny_reasons":[{"reason":"no_grant","count":2}]}`},
		{"traffic series never sampled", apitypes.TrafficSeries{Window: "day", StepSeconds: 3600, Buckets: []apitypes.TrafficCount{}, DenyReasons: []apitypes.ReasonCount{}},
			`{"window":"day","step_seconds":3600,"sampled_at":null,"buckets":[],"deny_reasons":[]}`},
		// Policies (policies.go).
		{"policy version", apitypes.PolicyVersion{Version: 2, Policy: "p", Tests: "t", Digest: "d", Comment: "c", CreatedBy: "me", CreatedAt: at, Active: true},
			`{"version":2,"policy":"p","tests":"t","digest":"d","comment":"c","created_by":"me","created_at":"2026-01-02T03:04:05Z","active":true}`},
		{"policy list", apitypes.PolicyVersionList{Versions: []apitypes.PolicyVersion{}, Active: 1}, `{"active":1,"versions":[]}`},
		{"policy valid", apitypes.PolicyValidation{Valid: true}, `{"valid":true}`},
		{"policy test report", viewTestReport(policy.TestReport{Passed: 1, Failed: 1, Results: []policy.TestResult{{Name: "a", Passed: true, Line: 3, Duration: time.Millisecond}, {Name: "b", Error: "e", Line: 4}}}),
			`{"passed":1,"failed":1,"results":[{"name":"a","passed":true,"line":3,"duration_ns":1000000},{"name":"b","passed":false,"error":"e","line":4,"duration_ns":0}]}`},
		{"policy test report empty", viewTestReport(policy.TestReport{}), `{"passed":0,"failed":0,"results":null}`},
		{"policy activation", apitypes.PolicyActivation{Active: 2, Tests: viewTestReport(policy.TestReport{Passed: 1})}, `{"active":2,"tests":{"passed":1,"failed":0,"results":null}}`},
		{"policy activation refused", apitypes.PolicyActivationRefused{Error: apitypes.ErrorDetail{Code: policy.TestsFailed, Message: "m"}, Tests: viewTestReport(policy.TestReport{Failed: 1})},
			`{"error":{"code":"policy_tests_failed","message":"m"},"tests":{"passed":0,"failed":1,"results":null}}`},
		{"policy diff", apitypes.PolicyDiff{From: 1, To: 2, Diff: "+x"}, `{"diff":"+x","from":1,"to":2}`},
		{"simulation", apitypes.SimulateResponse{Reason: "r", PolicyVersion: 2, Device: "d1"},
			`{"allow":false,"device":"d1","policy_version":2,"reason":"r","rule":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.view)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("JSON\n got %s\nwant %s", b, tt.want)
			}
		})
	}
}
