package api_test

import (
	"context"
	"errors"
	"net/http"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/ocsp"
	"github.com/gatehouse-iot/gatehouse/revoke"
)

// Test doubles shared by the API tests. Every api.Config dependency is
// required, so the test stack (helpers_test.go) wires a real service where
// one costs nothing until used and one of these where the real one would do
// work at start (sign an OCSP responder certificate) or is not this
// package's to test (the UI).

var (
	_ revoke.Core     = noCore{}
	_ revoke.CRL      = downCRL{}
	_ revoke.Sessions = downSessions{}
	_ api.CRL         = (*fakeCRL)(nil)
	_ api.OCSP        = noOCSP{}
)

// noCore is a decision core with nothing to refresh.
type noCore struct{}

func (noCore) Sync(context.Context) (int, error) { return 0, nil }

// downCRL and downSessions are follow-ups that cannot complete: the CRL
// signer and the kick queue are away.
type downCRL struct{}

func (downCRL) Publish(context.Context) error { return errors.New("CA key unavailable") }

type downSessions struct{}

func (downSessions) Kick(context.Context, string, string) error { return errors.New("queue away") }
func (downSessions) Cancel(context.Context, string) error       { return errors.New("queue away") }

// fakeCRL serves cur (none until a test sets it) and reports status.
type fakeCRL struct {
	cur    *crl.Current
	status crl.Status
}

func (f *fakeCRL) Serve(context.Context) (*crl.Current, error) {
	if f.cur == nil {
		return nil, fault.New(fault.NotFound, "no CRL has been generated yet")
	}
	return f.cur, nil
}

func (f *fakeCRL) Status() crl.Status { return f.status }

// noOCSP answers every request "unauthorized" (RFC 6960: it answers for no
// certificate), as a responder for another CA would.
type noOCSP struct{}

func (noOCSP) Respond(context.Context, []byte) ocsp.Answer {
	return ocsp.Answer{DER: []byte{0x30, 0x03, 0x0a, 0x01, byte(ocsp.Unauthorized)}, Status: ocsp.Unauthorized}
}

// noUI stands in for the web UI: every page is 404, so a test sees what the
// API answers and not a page.
var noUI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "no UI in this test", http.StatusNotFound)
})
