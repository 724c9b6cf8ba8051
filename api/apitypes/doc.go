// Package apitypes holds the JSON request and response shapes of the
// Gatehouse HTTP API (/api/v1), declared once: the api handlers render them,
// the api tests decode them strictly, and the CLI encodes and decodes them.
// Like OPA's server/types it imports only the standard library and value
// packages (fault), never echo or store, so a client can use it without
// pulling in the server.
//
// The field names and order are the wire format the UI reads: changing a
// tag, an omitempty or a field's position changes bytes that clients and the
// golden test (api/views_golden_test.go) depend on. Durations are Go
// duration strings ("720h0m0s") and times RFC 3339 in UTC.
package apitypes
