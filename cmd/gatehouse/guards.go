package main

import (
	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/events"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/metrics"
	"github.com/gatehouse-iot/gatehouse/ocsp"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Compile-time guards: every consumer interface is declared where it is
// consumed (enroll, revoke, api, ...), and the packages implementing them
// (store, ca, authz, ...) must not import their consumers, so the guards
// live here, in the one package that already imports both sides. A
// signature drift then breaks the build on this line instead of in wire.go's
// struct literals or, for optional interfaces found by type assertion
// (kick.Checker), silently at run time.

// store.Store is the persistence behind every consumer.
var (
	_ audit.Sink             = (*store.Store)(nil)
	_ auth.Users             = (*store.Store)(nil)
	_ auth.Sessions          = (*store.Store)(nil)
	_ auth.TokenStore        = (*store.Store)(nil)
	_ authzsync.Source       = (*store.Store)(nil)
	_ ca.CertStore           = (*store.Store)(nil)
	_ ca.CRLStore            = (*store.Store)(nil)
	_ crl.Numbers            = (*store.Store)(nil)
	_ enroll.Catalog         = (*store.Store)(nil)
	_ enroll.Tokens          = (*store.Store)(nil)
	_ enroll.Records         = (*store.Store)(nil)
	_ inventory.Fleets       = (*store.Store)(nil)
	_ inventory.Profiles     = (*store.Store)(nil)
	_ inventory.Devices      = (*store.Store)(nil)
	_ inventory.Certificates = (*store.Store)(nil)
	_ kick.Store             = (*store.Store)(nil)
	_ ocsp.Certs             = (*store.Store)(nil)
	_ policy.Versions        = (*store.Store)(nil)
	_ revoke.Store           = (*store.Store)(nil)
	_ revoke.JobRecords      = (*store.Store)(nil)
	_ revoke.JobQueue        = (*store.Store)(nil)
	_ revoke.JobStore        = (*store.Store)(nil)
	_ revoke.SupersededStore = (*store.Store)(nil)
	_ api.Batches            = (*store.Store)(nil)
	_ api.AuditLog           = (*store.Store)(nil)
	_ api.PolicyVersions     = (*store.Store)(nil)
	_ api.SessionKicks       = (*store.Store)(nil)
	_ api.Stats              = (*store.Store)(nil)
	_ api.Pinger             = (*store.Store)(nil)
)

// ca.CA is the issuer, CRL generator and role catalogue.
var (
	_ authzsync.Roles    = (*ca.CA)(nil)
	_ crl.Generator      = (*ca.CA)(nil)
	_ enroll.Issuer      = (*ca.CA)(nil)
	_ hooks.CertVerifier = (*ca.CA)(nil)
	_ api.CAInfo         = (*ca.CA)(nil)
	_ ocsp.Signer        = (*ca.OCSPSigner)(nil)
)

// The decision core and its feeders.
var (
	_ authzsync.Sink      = (*authz.Authorizer)(nil)
	_ hooks.Devices       = (*authz.Authorizer)(nil)
	_ authzsync.Freshness = (*authz.Authorizer)(nil)
	_ policy.Activator    = (*authz.Authorizer)(nil)
	_ policy.Freshness    = (*authz.Authorizer)(nil)
	_ hooks.Authorizer    = (*authz.Authorizer)(nil)
	_ api.Decisions       = (*authz.Authorizer)(nil)
	_ api.Staleness       = (*authz.Authorizer)(nil)
	_ enroll.Core         = (*authzsync.Syncer)(nil)
	_ revoke.Core         = (*authzsync.Syncer)(nil)
)

// Revocation: CRL publisher, OCSP responder, kicks.
var (
	_ enroll.CRL      = (*crl.Publisher)(nil)
	_ revoke.CRL      = (*crl.Publisher)(nil)
	_ api.CRL         = (*crl.Publisher)(nil)
	_ api.OCSP        = (*ocsp.Responder)(nil)
	_ revoke.Sessions = (*kick.Service)(nil)
	_ api.KickTargets = (*kick.Service)(nil)
	_ api.Degraded    = (*kick.Service)(nil)
	_ api.Degraded    = (*crl.Publisher)(nil)
)

// The operator edge: admin API tokens.
var (
	_ api.AdminTokens = (*auth.Tokens)(nil)
)

// The broker event stream: the hub hears the core's changes, serves the
// streams and carries Mosquitto kicks, whose acknowledgements the hooks
// hand back to the kicker.
var (
	_ authz.Changes     = (*events.Hub)(nil)
	_ hooks.EventSource = (*events.Hub)(nil)
	_ kick.Streams      = (*events.Hub)(nil)
	_ hooks.Freshness   = (*authz.Authorizer)(nil)
	_ hooks.KickAcks    = (*kick.Mosquitto)(nil)
	_ kick.Broker       = (*kick.Mosquitto)(nil)
)

// The metrics: every flow reports to the one *metrics.Metrics through the
// observer its package declares.
var (
	_ authz.Observer  = (*metrics.Metrics)(nil)
	_ hooks.Observer  = (*metrics.Metrics)(nil)
	_ api.Observer    = (*metrics.Metrics)(nil)
	_ enroll.Observer = (*metrics.Metrics)(nil)
)
