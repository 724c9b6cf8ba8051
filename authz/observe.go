package authz

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"
)

// Observer learns of every decision and every grant evaluation, for
// metrics. It is called on the decision path, so it must be quick, must not
// block and must not allocate. Nil (the default) observes nothing and costs
// the decision path one nil check.
type Observer interface {
	// Decided: one Authorize call of dialect (Request.Dialect) answered
	// with result (ResultAllow, ResultDeny, ResultError) for reason, a
	// class from ReasonClasses. dur is how long it took for one call in
	// LatencySample, chosen at random, and negative for the others.
	Decided(dialect string, action Action, result, reason string, dur time.Duration)
	// GrantsComputed: one policy evaluation of a device's grants took dur,
	// whatever its outcome.
	GrantsComputed(dur time.Duration)
}

// Decision results as an Observer receives them.
const (
	ResultAllow = "allow"
	ResultDeny  = "deny"
	ResultError = "error"
)

// DialectSimulate is the Request.Dialect of Simulate's what-if decisions.
const DialectSimulate = "simulate"

// Reason classes: a fixed set an Observer may use as a label, unlike
// Decision.Reason, which is free text for operators.
const (
	ClassOK               = "ok"
	ClassStale            = "stale"
	ClassNoIdentity       = "no_identity"
	ClassClientIDMismatch = "client_id_mismatch"
	ClassUnknownDevice    = "unknown_device"
	ClassNotActive        = "not_active"
	ClassNoCertificate    = "no_certificate"
	ClassCertExpired      = "cert_expired"
	ClassCertInvalid      = "cert_invalid"
	ClassBadRequest       = "bad_request"
	ClassInvalidTopic     = "invalid_topic"
	ClassNoGrant          = "no_grant"
	ClassQoSExceeded      = "qos_exceeded"
	ClassRetainDenied     = "retain_denied"
	ClassPolicyTimeout    = "policy_timeout"
	ClassPolicyError      = "policy_error"
	ClassNoPolicy         = "no_policy"
	ClassCanceled         = "canceled"
	// ClassUnauthenticated is for edges (hooks) that refuse a caller
	// before the core is asked.
	ClassUnauthenticated = "unauthenticated"
	ClassOther           = "other"
)

// ReasonClasses lists every class ReasonClass and ErrorClass return, and
// those edges use for requests they refuse themselves.
func ReasonClasses() []string {
	return []string{ClassOK, ClassStale, ClassNoIdentity, ClassClientIDMismatch, ClassUnknownDevice, ClassNotActive,
		ClassNoCertificate, ClassCertExpired, ClassCertInvalid, ClassBadRequest, ClassInvalidTopic, ClassNoGrant,
		ClassQoSExceeded, ClassRetainDenied, ClassPolicyTimeout, ClassPolicyError, ClassNoPolicy, ClassCanceled,
		ClassUnauthenticated, ClassOther}
}

// reasonClasses maps the core's reasons to their class. Every reason the
// core gives is here (TestEveryReasonHasAClass reads authz.go to keep it
// so); "device is <status>" is matched by prefix in ReasonClass.
var reasonClasses = map[string]string{
	"device active":           ClassOK,
	"granted":                 ClassOK,
	ReasonStale:               ClassStale,
	"no certificate identity": ClassNoIdentity,
	"client id does not match the certificate": ClassClientIDMismatch,
	"unknown device":                                      ClassUnknownDevice,
	"device has no current certificate":                   ClassNoCertificate,
	"certificate has expired":                             ClassCertExpired,
	"certificate is not the device's current certificate": ClassCertInvalid,
	"unknown action":                                      ClassBadRequest,
	"invalid qos":                                         ClassBadRequest,
	"invalid topic name":                                  ClassInvalidTopic,
	"invalid topic filter":                                ClassInvalidTopic,
	"no grant matches":                                    ClassNoGrant,
	"qos above the grant's maximum":                       ClassQoSExceeded,
	"retain not allowed by the grant":                     ClassRetainDenied,
	ReasonPolicyTimeout:                                   ClassPolicyTimeout,
}

// notActivePrefix starts the reason of a device whose status is not active.
const notActivePrefix = "device is "

// ReasonClass maps a decision's free-text reason to its class; a reason it
// does not know is ClassOther, so a label set stays bounded whatever the
// text.
func ReasonClass(reason string) string {
	if c, ok := reasonClasses[reason]; ok {
		return c
	}
	if strings.HasPrefix(reason, notActivePrefix) {
		return ClassNotActive
	}
	return ClassOther
}

// ErrorClass maps an error of Authorize to its class.
func ErrorClass(err error) string {
	switch {
	case errors.Is(err, ErrNoPolicy):
		return ClassNoPolicy
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ClassCanceled
	}
	return ClassPolicyError
}

// LatencySample is how many decisions share one duration measurement.
// Two clock reads cost as much as a cached decision itself on some clocks
// (250ns on a VM's), so only a random sample is timed: plenty for a
// latency distribution at any rate where the cost would matter.
const LatencySample = 8

// observeStart is when an observed decision starts: the zero time, and no
// clock read, when nothing observes or the decision is not in the sample.
func (a *Authorizer) observeStart() time.Time {
	if a.cfg.Observer == nil || rand.Uint32()%LatencySample != 0 {
		return time.Time{}
	}
	return time.Now()
}

// observe reports one Authorize call to the Observer, if any.
func (a *Authorizer) observe(start time.Time, req *Request, d *Decision, err error) {
	o := a.cfg.Observer
	if o == nil {
		return
	}
	dur := time.Duration(-1)
	if !start.IsZero() {
		dur = time.Since(start)
	}
	switch {
	case err != nil:
		o.Decided(req.Dialect, req.Action, ResultError, ErrorClass(err), dur)
	case d.Allow:
		o.Decided(req.Dialect, req.Action, ResultAllow, ClassOK, dur)
	default:
		o.Decided(req.Dialect, req.Action, ResultDeny, ReasonClass(d.Reason), dur)
	}
}

// grantsStart is when an observed grant evaluation starts; every one is
// timed, since an evaluation costs far more than the clock.
func (a *Authorizer) grantsStart() time.Time {
	if a.cfg.Observer == nil {
		return time.Time{}
	}
	return time.Now()
}

// observeGrants reports one grant evaluation that started at start.
func (a *Authorizer) observeGrants(start time.Time) {
	if o := a.cfg.Observer; o != nil {
		o.GrantsComputed(time.Since(start))
	}
}

// CacheStats returns the decision cache's lookups since New, hits and
// misses (absent or invalidated entries), and how many entries it holds.
func (a *Authorizer) CacheStats() (hits, misses uint64, entries int) {
	hits, misses = a.cache.stats()
	return hits, misses, a.cache.len()
}
