package authz

import (
	"reflect"
	"testing"
	"time"
)

// sameDevice decides whether a device change is announced to brokers that
// cache decisions; a field it forgot would leave their cached answers
// standing after that field changed. Every field of Device, changed alone,
// must make it report a difference (a field added later fails here until
// sameDevice compares it).
func TestSameDeviceComparesEveryField(t *testing.T) {
	base := Device{ID: "d1", Fleet: "f", Profile: "p", Active: true, Status: "active",
		Labels: map[string]string{"k": "v"}, Roles: []string{"telemetry"}, CertSerial: "01",
		CertNotAfter: time.Unix(1000, 0)}
	if !sameDevice(&base, &base) {
		t.Fatal("a device differs from itself")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		changed := base
		changed.Labels = map[string]string{"k": "v"}
		changed.Roles = []string{"telemetry"}
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"k": "other"}))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"command"}))
		case reflect.Array:
			f.Index(0).SetUint(f.Index(0).Uint() + 1)
		case reflect.Struct:
			if _, ok := f.Interface().(time.Time); !ok {
				t.Fatalf("field %s: teach this test its type", typ.Field(i).Name)
			}
			f.Set(reflect.ValueOf(base.CertNotAfter.Add(time.Second)))
		default:
			t.Fatalf("field %s: teach this test its kind %s", typ.Field(i).Name, f.Kind())
		}
		if sameDevice(&base, &changed) {
			t.Errorf("field %s changed, sameDevice still reports the same device", typ.Field(i).Name)
		}
	}
}
