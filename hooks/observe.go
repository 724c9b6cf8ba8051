package hooks

import (
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse-iot/gatehouse/authz"
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

// observeRefusal reports a request that err refused at the edge; errors
// of the core are not the edge's (the core reported them).
func (h *Handler) observeRefusal(dialect string, action authz.Action, err error) {
	if h.cfg.Observer == nil {
		return
	}
	var de decodeError
	switch {
	case errors.Is(err, errUnauthenticated):
		h.cfg.Observer.Refused(dialect, action, authz.ResultDeny, authz.ClassUnauthenticated)
	case errors.Is(err, errPasswordListener), errors.Is(err, errNoCertIdentity):
		h.cfg.Observer.Refused(dialect, action, authz.ResultDeny, authz.ClassNoIdentity)
	case errors.As(err, &de):
		h.cfg.Observer.Refused(dialect, action, authz.ResultError, authz.ClassBadRequest)
	}
}
