package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/events"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/metrics"
	"github.com/gatehouse-iot/gatehouse/ocsp"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/series"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/ui"
	"github.com/gatehouse-iot/gatehouse/vendors"
)

// app is the wired control plane: what serve runs and listens with. Its
// fields, like wire and the helpers below, follow the two flows (device,
// broker), then revocation, the operator edge and the infrastructure.
type app struct {
	// Device flow: enroll → ca → store.
	ca *ca.CA
	// Broker flow: hooks → authz, fed by policy and authzsync.
	hooks    *hooks.Handler
	authz    *authz.Authorizer
	policies *policy.Service
	sync     *authzsync.Syncer
	// Revocation: revoke, crl, ocsp (served through api), kick.
	revoke *revoke.Service
	// superseded revokes certificates replaced by renewals once their
	// profile's superseded_grace has passed.
	superseded *revoke.Sweeper
	crl        *crl.Publisher
	kick       *kick.Service
	// mosquittoKicks receives the gatehouse-mosquitto plugins'
	// acknowledgements (through the hooks); nil unless configured.
	mosquittoKicks *kick.Mosquitto
	// events fans the core's changes and Mosquitto kicks out to the
	// plugins' event streams (GET /hooks/v1/events).
	events *events.Hub
	// Operator edge: api (with the ui and auth inside), and the
	// dashboard's traffic series, sampled from the metrics.
	api     *api.Server
	traffic *series.Series
	// Infrastructure: the store, and the metrics every flow feeds (served
	// on the diagnostics listener).
	store   *store.Store
	metrics *metrics.Metrics
}

// wire builds every component from configuration. It needs an initialised
// data directory. It opens the store, builds the flows in dependency order,
// and only then loads the state the decision core starts from, so a
// configuration error stops the start before anything is written. Each flow
// has a core, built first, and a front (enrollment; the hooks), built once
// revocation, which both fronts use, stands. Whatever fails after the store
// opened closes it once, in the deferred close.
func wire(ctx context.Context, v *viper.Viper, log *slog.Logger) (_ *app, err error) {
	if !ca.Initialized(caDir(v)) {
		return nil, fault.New(fault.NotFound, "%s holds no CA: run `gatehouse init --data-dir %s` first", dataDir(v), dataDir(v))
	}
	pass, err := checkCustody(v)
	if err != nil {
		return nil, err
	}
	// Before anything opens: a server whose hooks could not authenticate
	// brokers must not start.
	hauth, err := hooksAuth(v)
	if err != nil {
		return nil, err
	}
	// Read once: the event hub's echoes and the decision core's bound
	// must be the same duration.
	staleness, err := maxStaleness(v)
	if err != nil {
		return nil, err
	}
	// Infrastructure first, although its section comes last: every flow
	// records into the store.
	st, err := openStore(ctx, v, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	a := &app{store: st, events: newEventHub(staleness, log), metrics: metrics.New(metrics.Config{})}
	base := publicURL(v)
	crlValidity, err := crlValidity(v)
	if err != nil {
		return nil, err
	}
	// Device flow, its root: the CA signs device certificates and the CRL.
	if a.ca, err = newCA(v, st, pass, base, crlValidity); err != nil {
		return nil, err
	}
	// Broker flow, its core: decisions rest on the CA's roles, the active
	// policy and the device state.
	if err := a.newDecisionCore(v, staleness, log); err != nil {
		return nil, err
	}
	// Revocation takes back what both flows gave.
	ocspResp, err := a.newRevocation(ctx, v, crlValidity, log)
	if err != nil {
		return nil, err
	}
	// Device flow, its front: enrollment and renewal come after the broker
	// flow and revocation because they refresh the core and republish the
	// CRL before they return, so a device may connect at once.
	inv, enr, err := a.newDeviceFront(log)
	if err != nil {
		return nil, err
	}
	// Broker flow, its front: the hook handler brokers ask.
	if a.hooks, err = newHooks(v, a, hauth, log); err != nil {
		return nil, err
	}
	// Operator edge.
	users, err := auth.New(auth.Config{Users: st, Sessions: st, Log: log})
	if err != nil {
		return nil, err
	}
	tokens, err := auth.NewTokens(auth.TokensConfig{Store: st})
	if err != nil {
		return nil, err
	}
	if a.traffic, err = series.New(series.Config{Source: series.FromGatherer(a.metrics.Gatherer()), Log: log}); err != nil {
		return nil, err
	}
	estServer, err := est.New(est.Config{Enroll: enr, CA: a.ca, Store: st})
	if err != nil {
		return nil, err
	}
	vendorRegistry, err := vendors.New(vendors.Config{Registry: st, Lists: st})
	if err != nil {
		return nil, err
	}
	a.api, err = api.New(api.Config{Inventory: inv, Enroll: enr, AdminTokens: tokens, Batches: st, Audit: auditLog{st, audit.NewChecker(audit.CheckerConfig{Store: st})},
		CA: a.ca, Policies: a.policies, PolicyVersions: st, Decisions: a.authz, Revoke: a.revoke, SessionKicks: st, KickTargets: a.kick, OCSP: ocspResp, CRL: a.crl, Stats: st, Traffic: a.traffic,
		Auth: users, SecureCookies: strings.HasPrefix(base, "https://"), PublicURL: base, UI: ui.Handler(), Logger: log, Version: version,
		Observer: a.metrics, EST: estServer, Vendors: vendorRegistry})
	if err != nil {
		return nil, err
	}
	if err := a.load(ctx); err != nil {
		return nil, err
	}
	a.metrics.Watch(metrics.Sources{Core: a.authz, CRL: a.crl, Kicks: st})
	logHookAuth(log, v, hauth)
	return a, nil
}

// load brings the decision core to the database's state: the active policy
// (the built-in default on a fresh database), then every device.
func (a *app) load(ctx context.Context) error {
	if err := a.policies.EnsureActive(ctx); err != nil {
		return fmt.Errorf("load the active policy: %w", err)
	}
	if _, err := a.sync.Sync(ctx); err != nil {
		return fmt.Errorf("load device state: %w", err)
	}
	return nil
}

// Device flow: enroll → ca → store.

func newCA(v *viper.Viper, st *store.Store, pass []byte, base string, crlValidity time.Duration) (*ca.CA, error) {
	cfg, err := caConfig(v, pass, st)
	if err != nil {
		return nil, err
	}
	cfg.CRLURL, cfg.OCSPURL, cfg.CRLStore, cfg.CRLValidity = base+"/crl", base+"/ocsp", st, crlValidity
	return ca.New(cfg)
}

// newDeviceFront returns inventory (fleets, profiles, devices) and
// enrollment; every change they make is audited in its transaction.
func (a *app) newDeviceFront(log *slog.Logger) (*inventory.Service, *enroll.Service, error) {
	st := a.store
	inv, err := inventory.New(inventory.Config{Fleets: st, Profiles: st, Devices: st, Certificates: st,
		Roles: a.ca.Roles()})
	if err != nil {
		return nil, nil, err
	}
	enr, err := enroll.New(enroll.Config{Catalog: st, Tokens: st, Records: st, Claims: st, Audit: audit.New(st, log), Issuer: a.ca, CRL: a.crl,
		Core: a.sync, Log: log, Observer: a.metrics, Vendors: st, IDevIDs: st})
	if err != nil {
		return nil, nil, err
	}
	return inv, enr, nil
}

// Broker flow: hooks → authz → policy, topic, authzsync.

// newDecisionCore builds the decision core, the policy service that loads
// versions into it and the syncer that feeds it device state. staleness is
// authz.max_staleness (maxStaleness).
func (a *app) newDecisionCore(v *viper.Viper, staleness time.Duration, log *slog.Logger) (err error) {
	if a.authz, err = newAuthz(v, staleness, a.events, a.metrics, log); err != nil {
		return err
	}
	if a.policies, err = policy.NewService(policy.ServiceConfig{Versions: a.store, Active: a.authz, Fresh: a.authz, Log: log}); err != nil {
		return err
	}
	a.sync, err = authzsync.New(authzsync.Config{Source: a.store, Roles: a.ca, Sink: a.authz, Fresh: a.authz, Log: log})
	return err
}

// newEventHub returns the hub of the broker event streams. Device and
// reset events are announced again after 2s and after max_staleness and a
// second (events/echo.go): a plugin whose decisions a balancer spreads over
// replicas then drops what a lagging replica answered. staleness is
// authz.max_staleness (maxStaleness).
func newEventHub(staleness time.Duration, log *slog.Logger) *events.Hub {
	echo := []time.Duration{2 * time.Second}
	if staleness > 0 {
		echo = append(echo, staleness+time.Second)
	}
	return events.NewHub(events.Config{Echo: echo, Log: log})
}

func newAuthz(v *viper.Viper, staleness time.Duration, changes authz.Changes, obs authz.Observer, log *slog.Logger) (*authz.Authorizer, error) {
	evalTimeout, err := policyEvalTimeout(v)
	if err != nil {
		return nil, err
	}
	if staleness == 0 {
		log.Warn("authz.max_staleness is 0: a replica cut off from the database keeps allowing what it last knew, revoked devices included")
	}
	return authz.New(authz.Config{Log: log, LogEvery: uint64(max(v.GetInt(keyDecisionLog), 0)), MaxStaleness: staleness,
		EvalTimeout: evalTimeout, Changes: changes, Observer: obs}), nil
}

func newHooks(v *viper.Viper, a *app, hauth hookAuth, log *slog.Logger) (*hooks.Handler, error) {
	cfg := hooks.Config{Authorizer: a.authz, Certs: a.ca, Devices: a.authz, Secret: hauth.secret, Events: a.events, Fresh: a.authz,
		ClientCerts: hauth.clientCerts, AllowUnauthenticated: hauth.open,
		MosquittoMode: hooks.MosquittoMode(v.GetString(keyHooksMosqMode)), RabbitCertLogin: v.GetBool(keyHooksRabbitCL),
		VerneMQPerFilterSuback: v.GetBool(keyHooksVMQ22), Log: log, Observer: a.metrics}
	// A nil *kick.Mosquitto in the interface would not be nil: only a
	// configured target receives acknowledgements.
	if a.mosquittoKicks != nil {
		cfg.KickAcks = a.mosquittoKicks
	}
	hk, err := hooks.New(cfg)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "%v", err)
	}
	return hk, nil
}

// Revocation: revoke, crl, ocsp, kick.

// newRevocation builds the CRL publisher, the session kicker, the
// revocation service and the superseded sweeper, and returns the OCSP
// responder (served through the API).
func (a *app) newRevocation(ctx context.Context, v *viper.Viper, crlValidity time.Duration, log *slog.Logger) (_ ocsp.Multi, err error) {
	st := a.store
	if a.crl, err = newCRL(v, a.ca, st, crlValidity, log); err != nil {
		return nil, err
	}
	// Cuts the live broker sessions of revoked and suspended devices.
	if a.kick, a.mosquittoKicks, err = newKicker(v, st, a.events, log); err != nil {
		return nil, err
	}
	if a.revoke, err = revoke.New(revoke.Config{Store: st, Jobs: st, Core: a.sync, CRL: a.crl, Sessions: a.kick, Log: log}); err != nil {
		return nil, err
	}
	if a.superseded, err = revoke.NewSweeper(revoke.SweeperConfig{Store: st, CRL: a.crl, Log: log}); err != nil {
		return nil, err
	}
	return newOCSP(ctx, a.ca, st, log)
}

// newCRL returns the CRL publisher: the current intermediate's list, and
// after rotations the retired intermediates' lists with it (in the file
// too, one PEM block each).
func newCRL(v *viper.Viper, authority *ca.CA, st *store.Store, validity time.Duration, log *slog.Logger) (*crl.Publisher, error) {
	retired := map[int]*x509.Certificate{}
	issuers := authority.Issuers()
	for i, gen := range authority.RetiredGenerations() {
		retired[gen] = issuers[i+1]
	}
	return crl.New(crl.Config{Generator: authority, Numbers: st, Issuer: authority.Intermediate(),
		Generation: authority.Generation(), Retired: retired,
		File: v.GetString(keyCRLFile), ReloadCommand: v.GetString(keyCRLReload), Validity: validity, Log: log})
}

// newOCSP returns the OCSP responder. Its key is made fresh and certified by
// the intermediate at every start (see ca/ocsp.go); it never touches the
// disk. Each retired intermediate has a responder of its own.
func newOCSP(ctx context.Context, authority *ca.CA, st *store.Store, log *slog.Logger) (ocsp.Multi, error) {
	signer, err := authority.NewOCSPSigner(ctx, 0)
	if err != nil {
		return nil, err
	}
	retired, err := authority.RetiredOCSPSigners(ctx, 0)
	if err != nil {
		return nil, err
	}
	var out ocsp.Multi
	for _, s := range append([]*ca.OCSPSigner{signer}, retired...) {
		r, err := ocsp.New(ocsp.Config{Certs: st, Signer: s, Issuer: s.Issuer(), Log: log})
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Operator edge: api, ui, auth — built inline in wire, since api takes
// every other component.

// diagnostics serves the diagnostics listener: /healthz and /readyz
// (api.Diagnostics) and the metrics at GET /metrics.
func (a *app) diagnostics() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api.Diagnostics(a.store, a.authz, a.kick, a.crl))
	mux.Handle("GET /metrics", a.metrics.Handler())
	return mux
}

// Infrastructure: store open (migrations run as it opens), fault, logging.

// openStore opens (and migrates) the configured database.
func openStore(ctx context.Context, v *viper.Viper, log *slog.Logger) (*store.Store, error) {
	return store.New(ctx, store.Config{DSN: databaseDSN(v), Logger: log})
}

func newLogger(v *viper.Viper) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(v.GetString(keyLogLevel))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(v.GetString(keyLogFormat), "json") {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// auditLog serves the API's audit reads from the store and its chain
// checks through a Checker, so page views do not each walk the chain.
type auditLog struct {
	*store.Store
	check *audit.Checker
}

func (l auditLog) VerifyAuditChain(ctx context.Context, since time.Time) (store.AuditVerification, error) {
	return l.check.VerifyAuditChain(ctx, since)
}
