package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/store"
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
			`{"name":"p","key_types":[],"validity":"720h0m0s","renew_window":"240h0m0s","superseded_grace":"1h0m0s","roles":[],"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
		{"profile", viewProfile(store.Profile{Name: "p", KeyTypes: []string{"P-256"}, Validity: time.Hour, RenewWindow: time.Minute, SupersededGrace: &grace, Roles: []string{"r"}, CreatedAt: at, UpdatedAt: at}),
			`{"name":"p","key_types":["P-256"],"validity":"1h0m0s","renew_window":"1m0s","superseded_grace":"30m0s","roles":["r"],"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`},
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
