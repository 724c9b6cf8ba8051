package authz_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gatehouse-iot/gatehouse/authz"
)

func TestRecentDenies(t *testing.T) {
	a := newAuthorizer(t)
	ctx := context.Background()
	ask := func(r authz.Request) {
		if _, err := a.Authorize(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ask(req(authz.Connect, "temp-1", ""))                                              // allow: not kept
	ask(req(authz.Publish, "temp-1", "fleets/plant/devices/temp-2/telemetry/celsius")) // deny by rule
	ask(req(authz.Connect, "susp-1", ""))                                              // deny by status
	ask(req(authz.Publish, "temp-1", "fleets/plant/devices/temp-1/telemetry/x"))       // allow
	ask(authz.Request{Action: authz.Connect, ClientID: "anon"})                        // deny, no identity

	all := a.RecentDenies("", 0)
	if len(all) != 3 {
		t.Fatalf("kept %d denies, want 3: %+v", len(all), all)
	}
	if all[0].ClientID != "anon" || all[1].Device != "susp-1" || all[2].Device != "temp-1" {
		t.Fatalf("not newest first: %+v", all)
	}
	d := all[2]
	if d.Action != authz.Publish || d.Topic != "fleets/plant/devices/temp-2/telemetry/celsius" || d.Reason != "no grant matches" ||
		d.PolicyVersion != 1 || !d.At.Equal(now) {
		t.Errorf("deny record = %+v", d)
	}
	cases := []struct {
		device string
		limit  int
		want   int
	}{{"temp-1", 0, 1}, {"susp-1", 0, 1}, {"ghost", 0, 0}, {"", 2, 2}, {"", 1, 1}}
	for _, c := range cases {
		if got := a.RecentDenies(c.device, c.limit); len(got) != c.want {
			t.Errorf("RecentDenies(%q, %d) = %d, want %d", c.device, c.limit, len(got), c.want)
		}
	}
}

func TestRecentDeniesRingWraps(t *testing.T) {
	a := authz.New(authz.Config{RecentDenies: 4})
	ctx := context.Background()
	for i := range 10 {
		// No policy: every request is a deny with an error, and is kept.
		_, _ = a.Authorize(ctx, authz.Request{Action: authz.Connect, Identity: fmt.Sprint("d", i)})
	}
	got := a.RecentDenies("", 0)
	if len(got) != 4 {
		t.Fatalf("kept %d, want 4", len(got))
	}
	for i, d := range got {
		if want := fmt.Sprint("d", 9-i); d.Device != want || d.Error == "" {
			t.Errorf("deny %d = %+v, want device %s with an error", i, d, want)
		}
	}
}

func BenchmarkAuthorizeDenyRecorded(b *testing.B) {
	a := newAuthorizer(b)
	ctx := context.Background()
	r := req(authz.Publish, "temp-1", "fleets/plant/devices/temp-2/telemetry/celsius")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = a.Authorize(ctx, r)
	}
}
