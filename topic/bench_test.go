package topic

import "testing"

var sink bool

// BenchmarkMatch measures an ACL check of a realistic PUBLISH.
func BenchmarkMatch(b *testing.B) {
	const name = "devices/dev-123/telemetry/temp"
	for _, bm := range []struct{ label, filter string }{
		{"exact", "devices/dev-123/telemetry/temp"},
		{"plus", "devices/+/telemetry/+"},
		{"hash", "devices/dev-123/#"},
		{"miss-first", "fleet/+/telemetry/temp"},
		{"miss-deep", "devices/+/cmd/#"},
		{"hash-all", "#"},
	} {
		b.Run(bm.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = Match(bm.filter, name)
			}
		})
	}
	// The default policy's namespace, one fleet level deeper: its own
	// telemetry grant, and a controller's command grant missing it.
	const fleetName = "fleets/plant/devices/dev-123/telemetry/temp"
	for _, bm := range []struct{ label, filter string }{
		{"fleet-own-hash", "fleets/plant/devices/dev-123/telemetry/#"},
		{"fleet-miss-deep", "fleets/plant/devices/+/cmd/#"},
		{"fleet-miss-fleet", "fleets/depot/devices/+/cmd/#"},
	} {
		b.Run(bm.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = Match(bm.filter, fleetName)
			}
		})
	}
}

// BenchmarkContains measures an ACL check of a realistic SUBSCRIBE.
func BenchmarkContains(b *testing.B) {
	for _, bm := range []struct{ label, outer, inner string }{
		{"equal", "devices/+/cmd/#", "devices/+/cmd/#"},
		{"narrower", "devices/+/cmd/#", "devices/dev-123/cmd/+"},
		{"name", "devices/+/cmd/#", "devices/dev-123/cmd/reboot"},
		{"wider", "devices/dev-123/#", "devices/+/cmd/#"},
		{"miss-deep", "devices/+/cmd/#", "devices/dev-123/telemetry/temp"},
		{"fleet-narrower", "fleets/plant/devices/+/cmd/#", "fleets/plant/devices/dev-123/cmd/+"},
		{"fleet-own", "fleets/plant/devices/dev-123/cmd/#", "fleets/plant/devices/dev-123/cmd/#"},
		{"fleet-other", "fleets/plant/devices/dev-123/cmd/#", "fleets/depot/devices/+/cmd/#"},
	} {
		b.Run(bm.label, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = Contains(bm.outer, bm.inner)
			}
		})
	}
}

// BenchmarkValidate measures validation, which runs once per packet.
func BenchmarkValidate(b *testing.B) {
	b.Run("name", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = ValidateName("devices/dev-123/telemetry/temp") == nil
		}
	})
	b.Run("filter", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = ValidateFilter("$share/g/devices/+/cmd/#") == nil
		}
	})
}
