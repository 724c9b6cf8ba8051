package authz_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// TestDefaultPolicyFleetIsolation runs the shipped policy through the
// decision core with two fleets: a controller commands the devices of its
// own fleet and no other, whichever way it spells the topic; it never
// reads other devices' commands; and a fleet-B device never receives a
// command published in fleet A's namespace, since it may subscribe only
// under its own fleet.
func TestDefaultPolicyFleetIsolation(t *testing.T) {
	ctx := context.Background()
	p, err := policy.Compile(ctx, policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	a := authz.New(authz.Config{Now: func() time.Time { return now }})
	a.SetPolicy(p, 1)
	for _, d := range []authz.Device{
		{ID: "ctl-a", Fleet: "fleet-a", Roles: []string{"command"}},
		{ID: "dev-a", Fleet: "fleet-a", Roles: []string{"telemetry"}},
		{ID: "ctl-b", Fleet: "fleet-b", Roles: []string{"command"}},
		{ID: "dev-b", Fleet: "fleet-b", Roles: []string{"telemetry"}},
	} {
		d.Active, d.Status, d.CertNotAfter = true, "active", now.Add(time.Hour)
		a.UpsertDevice(d)
	}
	cases := []struct {
		name   string
		dev    string
		action authz.Action
		topic  string
		allow  bool
	}{
		{"controller A commands a device of fleet A", "ctl-a", authz.Publish, "fleets/fleet-a/devices/dev-a/cmd/reboot", true},
		{"controller B commands a device of fleet B", "ctl-b", authz.Publish, "fleets/fleet-b/devices/dev-b/cmd/reboot", true},
		{"controller A commands a device of fleet B", "ctl-a", authz.Publish, "fleets/fleet-b/devices/dev-b/cmd/reboot", false},
		{"controller A, fleet-B device under fleet A's prefix", "ctl-a", authz.Publish, "fleets/fleet-a/devices/dev-b/cmd/reboot", true},
		{"controller A, old unscoped command topic", "ctl-a", authz.Publish, "devices/dev-b/cmd/reboot", false},
		{"controller A subscribes to fleet B's commands", "ctl-a", authz.Subscribe, "fleets/fleet-b/devices/+/cmd/#", false},
		{"controller A subscribes to a fleet-B device's commands", "ctl-a", authz.Subscribe, "fleets/fleet-b/devices/dev-b/cmd/#", false},
		{"controller A subscribes to every fleet's commands", "ctl-a", authz.Subscribe, "fleets/+/devices/+/cmd/#", false},
		{"controller A subscribes to its fleet's device commands", "ctl-a", authz.Subscribe, "fleets/fleet-a/devices/dev-a/cmd/#", false},
		{"controller A subscribes to its own commands", "ctl-a", authz.Subscribe, "fleets/fleet-a/devices/ctl-a/cmd/#", true},
		{"device B subscribes to its commands under fleet A", "dev-b", authz.Subscribe, "fleets/fleet-a/devices/dev-b/cmd/#", false},
		{"device B subscribes to its own commands", "dev-b", authz.Subscribe, "fleets/fleet-b/devices/dev-b/cmd/#", true},
		{"device B subscribes to fleet A's broadcast", "dev-b", authz.Subscribe, "fleets/fleet-a/broadcast/#", false},
		{"device B publishes telemetry into fleet A", "dev-b", authz.Publish, "fleets/fleet-a/devices/dev-b/telemetry/t", false},
		{"sensor A commands its own fleet", "dev-a", authz.Publish, "fleets/fleet-a/devices/dev-a/cmd/reboot", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := a.Authorize(ctx, authz.Request{Action: tc.action, Identity: tc.dev, ClientID: tc.dev, Topic: tc.topic, QoS: 1})
			if err != nil || d.Allow != tc.allow {
				t.Fatalf("%+v, %v: want allow=%v", d, err, tc.allow)
			}
		})
	}
}
