package hooks

import (
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// Observer learns what the hook edge served, for metrics (package
// metrics). The core reports its own decisions (authz.Observer); this
// reports what the core never sees.
type Observer interface {
	// HookServed: one request of dialect answered, end to end.
	HookServed(dialect string, dur time.Duration)
	// Refused: a request the edge denied itself, before asking the core:
	// result authz.ResultDeny or authz.ResultError, reason an authz class.
	Refused(dialect string, action authz.Action, result, reason string)
}

// timed wraps one dialect's handler to time its requests for the
// Observer. (Each handler names its dialect to decide itself, for the
// core's Request.Dialect: TestObserverPerDialect checks the two agree.)
func (h *Handler) timed(name string, f http.HandlerFunc) http.HandlerFunc {
	if h.cfg.Observer == nil {
		return f
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		f(w, r)
		h.cfg.Observer.HookServed(name, time.Since(start))
	}
}

// coreError marks an error the core returned: the core counted it.
type coreError struct{ error }

func (e coreError) Unwrap() error { return e.error }

// observeRefusal reports a request that err refused at the edge. Every
// refusal the core did not count is counted here, as a deny or an error
// with a bounded class; a caller without the hook credentials is counted
// as unauthenticated whatever else is wrong with its request, so an
// anonymous sender cannot move the error rate.
func (h *Handler) observeRefusal(r *http.Request, dialect string, action authz.Action, err error) {
	if h.cfg.Observer == nil {
		return
	}
	var (
		de   decodeError
		core coreError
	)
	result, reason := authz.ResultDeny, ""
	switch {
	case errors.As(err, &core):
		return
	case errors.Is(err, errUnauthenticated), !h.authenticated(r):
		reason = authz.ClassUnauthenticated
	case errors.Is(err, errPasswordListener), errors.Is(err, errNoCertIdentity):
		reason = authz.ClassNoIdentity
	case errors.As(err, &de):
		result, reason = authz.ResultError, authz.ClassBadRequest
	case fault.Is(err, fault.CertInvalid):
		reason = authz.ClassCertInvalid
	default:
		result, reason = authz.ResultError, authz.ClassOther
	}
	h.cfg.Observer.Refused(dialect, action, result, reason)
}
