package api

import (
	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/store"
)

// The JSON shapes live in apitypes, shared with the CLI and the tests;
// these functions fill them from store and enroll values.

func viewFleet(f store.Fleet) apitypes.Fleet {
	return apitypes.Fleet{Name: f.Name, Description: f.Description, CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt}
}

func viewProfile(p store.Profile) apitypes.Profile {
	return apitypes.Profile{Name: p.Name, KeyTypes: nonNil(p.KeyTypes), Validity: p.Validity.String(),
		RenewWindow: p.RenewWindow.String(), SupersededGrace: p.Grace().String(),
		RenewAfterExpiry: p.AfterExpiry().String(), ServerKeygen: p.KeygenOnServer(), DeviceIDFrom: p.IDFrom(),
		Roles:     nonNil(p.Roles),
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func viewDevice(d store.Device) apitypes.Device {
	labels := d.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return apitypes.Device{ID: d.ID, Fleet: d.Fleet, Profile: d.Profile, Status: string(d.Status),
		Identity: ca.IdentityURI(d.Fleet, d.ID), Labels: labels, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

func viewCert(c store.Certificate) apitypes.Certificate {
	v := apitypes.Certificate{Serial: c.Serial, Fingerprint: c.Fingerprint, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Status: string(c.Status), RevokedAt: c.RevokedAt, Certificate: c.PEM, Discarded: c.Discarded}
	if c.RevokedAt != nil {
		r := c.RevocationReason
		v.RevocationReason = &r
	}
	return v
}

func viewBatch(b store.TokenBatch) apitypes.TokenBatch {
	return apitypes.TokenBatch{ID: b.ID, Fleet: b.Fleet, Profile: b.Profile, Count: b.Count, Used: b.Used,
		ExpiresAt: b.ExpiresAt, CreatedBy: b.CreatedBy, CreatedAt: b.CreatedAt, RevokedAt: b.RevokedAt}
}

func viewAudit(e store.AuditEvent) apitypes.AuditEvent {
	return apitypes.AuditEvent{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, ObjectType: e.ObjectType,
		ObjectID: e.ObjectID, Detail: e.Detail}
}

func viewEnroll(r enroll.Result) apitypes.EnrollResponse {
	return apitypes.EnrollResponse{DeviceID: r.Device.ID, Fleet: r.Device.Fleet, Identity: ca.IdentityURI(r.Device.Fleet, r.Device.ID),
		Serial: r.Serial, NotAfter: r.Certificate.NotAfter.UTC(), Certificate: string(ca.EncodePEM(r.Certificate)),
		Chain: string(ca.EncodePEM(r.Chain...))}
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
