package revoke_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// TestNewRequires: a service missing its store, its decision core or its
// job store is refused at construction, not when a batch is first revoked.
func TestNewRequires(t *testing.T) {
	var st *store.Store // never dereferenced: New only checks presence
	full := func() revoke.Config { return revoke.Config{Store: st, Core: &effects{}, Jobs: st} }
	for _, c := range []struct {
		name string
		drop func(*revoke.Config)
	}{
		{"Store", func(c *revoke.Config) { c.Store = nil }},
		{"Core", func(c *revoke.Config) { c.Core = nil }},
		{"Jobs", func(c *revoke.Config) { c.Jobs = nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := full()
			c.drop(&cfg)
			if _, err := revoke.New(cfg); err == nil || !strings.Contains(err.Error(), c.name) {
				t.Errorf("New without %s: err %v, want one naming %s", c.name, err, c.name)
			}
		})
	}
	if _, err := revoke.New(full()); err != nil {
		t.Errorf("New with every required field: %v", err)
	}
}
