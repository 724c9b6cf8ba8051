package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/api"
	"github.com/gatehouse-iot/gatehouse/audit"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/authzsync"
	"github.com/gatehouse-iot/gatehouse/ca"
	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/enroll"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/hooks"
	"github.com/gatehouse-iot/gatehouse/inventory"
	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/ocsp"
	"github.com/gatehouse-iot/gatehouse/policy"
	"github.com/gatehouse-iot/gatehouse/revoke"
	"github.com/gatehouse-iot/gatehouse/store"
	"github.com/gatehouse-iot/gatehouse/ui"
)

// app is the wired control plane.
type app struct {
	log       *slog.Logger
	store     *store.Store
	ca        *ca.CA
	inventory *inventory.Service
	enroll    *enroll.Service
	api       *api.Server
	authz     *authz.Authorizer
	sync      *authzsync.Syncer
	policies  *policy.Service
	revoke    *revoke.Service
	hooks     *hooks.Handler
	crl       *crl.Publisher
	kick      *kick.Service
	// superseded revokes certificates replaced by renewals once their
	// profile's superseded_grace has passed.
	superseded *revoke.Sweeper
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

// openStore opens (and migrates) the configured database.
func openStore(ctx context.Context, v *viper.Viper, log *slog.Logger) (*store.Store, error) {
	return store.New(ctx, store.Config{DSN: databaseDSN(v), Logger: log})
}

// wire builds every component from configuration. It needs an initialised
// data directory.
func wire(ctx context.Context, v *viper.Viper, log *slog.Logger) (*app, error) {
	if !ca.Initialized(caDir(v)) {
		return nil, fault.New(fault.NotFound, "%s holds no CA: run `gatehouse init --data-dir %s` first", dataDir(v), dataDir(v))
	}
	pass, err := readPassphrase(v)
	if err != nil {
		return nil, err
	}
	// Before anything opens: a server whose hooks could not authenticate
	// brokers must not start.
	hauth, err := hooksAuth(v)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, v, log)
	if err != nil {
		return nil, err
	}
	base := publicURL(v)
	crlValidity, err := crlValidity(v)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	authority, err := ca.New(ca.Config{Dir: caDir(v), Passphrase: pass, Store: st, RoleOIDs: roleOIDs(v),
		CRLURL: base + "/crl", OCSPURL: base + "/ocsp", CRLStore: st, CRLValidity: crlValidity})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	crls, err := crl.New(crl.Config{Generator: authority, Numbers: st, Issuer: authority.Intermediate(),
		File: v.GetString(keyCRLFile), ReloadCommand: v.GetString(keyCRLReload), Validity: crlValidity, Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	rec := audit.New(st, log)
	inv, err := inventory.New(inventory.Config{Fleets: st, Profiles: st, Devices: st, Certificates: st,
		Roles: authority.Roles()})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	staleness, err := maxStaleness(v)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	evalTimeout, err := policyEvalTimeout(v)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	az := authz.New(authz.Config{Log: log, LogEvery: uint64(max(v.GetInt(keyDecisionLog), 0)), MaxStaleness: staleness,
		EvalTimeout: evalTimeout})
	if staleness == 0 {
		log.Warn("authz.max_staleness is 0: a replica cut off from the database keeps allowing what it last knew, revoked devices included")
	}
	pol, err := policy.NewService(policy.ServiceConfig{Versions: st, Active: az, Fresh: az, Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	if err := pol.EnsureActive(ctx); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("load the active policy: %w", err)
	}
	syncer, err := authzsync.New(authzsync.Config{Source: st, Roles: authority, Sink: az, Fresh: az, Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	// Enrollment and renewal refresh this replica's core before they
	// return, so a device may connect at once.
	enr, err := enroll.New(enroll.Config{Catalog: st, Tokens: st, Records: st, Audit: rec, Issuer: authority, CRL: crls,
		Core: syncer, Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	// Cuts the live broker sessions of revoked and suspended devices.
	kicker, err := newKicker(v, st, log)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	rev, err := revoke.New(revoke.Config{Store: st, Core: syncer, CRL: crls, Sessions: kicker, Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	sweeper, err := revoke.NewSweeper(revoke.SweeperConfig{Store: st, CRL: crls, Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	// The responder key is made fresh and certified by the intermediate at
	// every start (see ca/ocsp.go); it never touches the disk.
	ocspSigner, err := authority.NewOCSPSigner(ctx, 0)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	ocspResp, err := ocsp.New(ocsp.Config{Certs: st, Signer: ocspSigner, Issuer: authority.Intermediate(), Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	users, err := auth.New(auth.Config{Users: st, Sessions: st, Log: log})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	srv, err := api.New(api.Config{Inventory: inv, Enroll: enr, AdminTokens: st, Batches: st, Audit: st,
		CA: authority, Policies: pol, PolicyVersions: st, Decisions: az, Revoke: rev, SessionKicks: st, KickTargets: kicker, OCSP: ocspResp, CRL: crls, Stats: st,
		Auth: users, SecureCookies: strings.HasPrefix(base, "https://"), PublicURL: base, UI: ui.Handler(), Logger: log, Version: version})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	if _, err := syncer.Sync(ctx); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("load device state: %w", err)
	}
	hk, err := hooks.New(hooks.Config{Authorizer: az, Certs: authority, Secret: hauth.secret,
		ClientCerts: hauth.clientCerts, AllowUnauthenticated: hauth.open,
		MosquittoMode: hooks.MosquittoMode(v.GetString(keyHooksMosqMode)), RabbitCertLogin: v.GetBool(keyHooksRabbitCL),
		VerneMQPerFilterSuback: v.GetBool(keyHooksVMQ22), Log: log})
	if err != nil {
		_ = st.Close()
		return nil, fault.Wrap(err, fault.InvalidArgument, "%v", err)
	}
	logHookAuth(log, v, hauth)
	return &app{log: log, store: st, ca: authority, inventory: inv, enroll: enr, api: srv, authz: az, sync: syncer, policies: pol, hooks: hk, revoke: rev, crl: crls, kick: kicker, superseded: sweeper}, nil
}
