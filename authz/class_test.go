package authz

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/policy"
)

// TestClassKey: devices share a class exactly when the policy sees the
// same fleet, profile, roles (in order) and labels; the encoding leaves no
// two different inputs the same key.
func TestClassKey(t *testing.T) {
	base := Device{Fleet: "f", Profile: "p", Roles: []string{"a", "b"}, Labels: map[string]string{"k": "v", "x": "y"}}
	key := func(d Device) string { return string(appendClassKey(nil, &d)) }
	same := []func(d *Device){
		func(d *Device) { d.ID = "other" },
		func(d *Device) { d.Status, d.Active, d.CertSerial = "suspended", false, "02" },
		func(d *Device) { d.Labels = map[string]string{"x": "y", "k": "v"} },
	}
	differ := []func(d *Device){
		func(d *Device) { d.Fleet = "f2" },
		func(d *Device) { d.Fleet, d.Profile = "fp", "" },
		func(d *Device) { d.Roles = []string{"b", "a"} },
		func(d *Device) { d.Roles = []string{"a:b"} },
		func(d *Device) { d.Roles = []string{"a"}; d.Labels = map[string]string{"1:b": "k", "x": "y"} },
		func(d *Device) { d.Labels = map[string]string{"k": "v"} },
		func(d *Device) { d.Labels = map[string]string{"k": "vx", "": "y"} },
		func(d *Device) { d.Labels = nil },
	}
	for i, f := range same {
		d := base
		f(&d)
		if key(d) != key(base) {
			t.Errorf("same[%d]: %q != %q", i, key(d), key(base))
		}
	}
	for i, f := range differ {
		d := base
		f(&d)
		if key(d) == key(base) {
			t.Errorf("differ[%d]: both %q", i, key(d))
		}
	}
	if key(Device{Labels: map[string]string{}}) != key(Device{}) {
		t.Error("nil and empty labels must share a class: the policy sees both as {}")
	}
}

// TestClassesDroppedWithTheirDevices: the class table holds only classes
// some device is in, so label churn cannot grow it.
func TestClassesDroppedWithTheirDevices(t *testing.T) {
	a := New(Config{})
	for i := range 50 {
		a.UpsertDevice(Device{ID: fmt.Sprintf("d%d", i), Fleet: "f", Labels: map[string]string{"n": fmt.Sprint(i % 5)}, CertNotAfter: time.Now().Add(time.Hour)})
	}
	count := func() int { a.mu.RLock(); defer a.mu.RUnlock(); return len(a.classes) }
	if n := count(); n != 5 {
		t.Fatalf("%d classes, want 5", n)
	}
	for i := range 50 { // every device moves to its own class, then away
		a.UpsertDevice(Device{ID: fmt.Sprintf("d%d", i), Fleet: "f", Labels: map[string]string{"n": fmt.Sprint(100 + i)}})
	}
	if n := count(); n != 50 {
		t.Fatalf("%d classes after the move, want 50", n)
	}
	for i := range 50 {
		a.RemoveDevice(fmt.Sprintf("d%d", i))
	}
	if n := count(); n != 0 {
		t.Fatalf("%d classes after removing every device, want 0", n)
	}
}

// TestPendingBounded: a core whose WarmGrants never runs does not queue
// upserts without bound; the next WarmGrants then passes over every
// device, so none is left cold.
func TestPendingBounded(t *testing.T) {
	p := compileDefault(t)
	a := New(Config{})
	a.SetPolicy(p, 1)
	if _, err := a.WarmGrants(context.Background()); err != nil {
		t.Fatal(err)
	}
	for round := range 30 {
		for i := range 100 {
			a.UpsertDevice(Device{ID: fmt.Sprintf("d%d", i), Fleet: fmt.Sprintf("f%d", round), Active: true, CertNotAfter: time.Now().Add(time.Hour)})
		}
	}
	a.mu.RLock()
	n := len(a.pending)
	a.mu.RUnlock()
	if n > 1024 {
		t.Fatalf("%d upserts queued for 100 devices", n)
	}
	if _, err := a.WarmGrants(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := ColdDevices(a); c != 0 {
		t.Fatalf("%d devices cold after the pass", c)
	}
}

func compileDefault(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(context.Background(), policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
