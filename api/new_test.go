package api_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// optionalDeps are the api.Config fields of pointer or interface type that
// may be nil: the logger defaults to discarding, and without an observer
// nothing is measured.
var optionalDeps = map[string]bool{"Logger": true, "Observer": true}

// TestNewRequiresEveryDependency: every route is always registered, so
// api.New refuses a Config that lacks any dependency and names each one
// missing. The fields are walked by reflection: a dependency added to
// Config later is covered without touching this test.
func TestNewRequiresEveryDependency(t *testing.T) {
	st, err := store.New(t.Context(), store.Config{DSN: testdb.SQLite(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clk := &clock{}
	theCA := newCA(t, st, clk.Now)
	full := fullConfig(t, st, theCA, audit.New(st, nil), clk.Now)
	if _, err := api.New(full); err != nil {
		t.Fatalf("New with every dependency: %v", err)
	}

	typ := reflect.TypeOf(full)
	var all []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if k := f.Type.Kind(); (k != reflect.Pointer && k != reflect.Interface) || optionalDeps[f.Name] {
			continue
		}
		all = append(all, f.Name)
		t.Run(f.Name, func(t *testing.T) {
			cfg := full
			reflect.ValueOf(&cfg).Elem().Field(i).SetZero()
			_, err := api.New(cfg)
			if err == nil {
				t.Fatalf("New without %s succeeded", f.Name)
			}
			if want := "missing " + f.Name + " "; !strings.Contains(err.Error(), want) {
				t.Errorf("New without %s: %q does not say %q", f.Name, err, want)
			}
		})
	}
	if len(all) < 17 {
		t.Fatalf("only %d dependencies found: %v", len(all), all)
	}
	_, err = api.New(api.Config{})
	if err == nil || !strings.Contains(err.Error(), strings.Join(all, ", ")) {
		t.Errorf("New(Config{}): %v, want every dependency named in field order: %s", err, strings.Join(all, ", "))
	}
	for name := range optionalDeps {
		cfg := full
		reflect.ValueOf(&cfg).Elem().FieldByName(name).SetZero()
		if _, err := api.New(cfg); err != nil {
			t.Errorf("New without optional %s: %v", name, err)
		}
	}
}
