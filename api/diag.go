package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Pinger reports whether a dependency answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Staleness reports whether the decision core denies every request because
// its copy of the database is too old, and when that copy last matched the
// database (zero: never).
type Staleness interface {
	Stale() (bool, time.Time)
}

// Degraded lists problems that do not make the process unready: it still
// answers brokers and the API, but some duty fails (e.g. a kick target
// refuses Gatehouse's credentials).
type Degraded interface {
	Degraded() []string
}

// Diagnostics serves /healthz (the process runs) and /readyz (it can serve:
// the database answers and, when core is set, the decision core is not
// denying everything as stale). It lives on its own listener so probes never
// compete with, or expose, the API.
//
// The degraded sources add lines after "ok" while the status stays 200:
// taking a replica out of service because a kick target is misconfigured
// would make brokers lose their hook answers, denying every device, which
// is worse than a kick that cannot be delivered.
func Diagnostics(db Pinger, core Staleness, degraded ...Degraded) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var problems []string
		if err := db.Ping(ctx); err != nil {
			problems = append(problems, "database unavailable")
		}
		if core != nil {
			if stale, synced := core.Stale(); stale {
				msg := "decision state stale: never synced with the database"
				if !synced.IsZero() {
					msg = fmt.Sprintf("decision state stale: last synced with the database %s ago", time.Since(synced).Round(time.Second))
				}
				problems = append(problems, msg)
			}
		}
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, p := range problems {
				_, _ = w.Write([]byte(p + "\n"))
			}
			return
		}
		var notes []string
		for _, d := range degraded {
			notes = append(notes, d.Degraded()...)
		}
		if len(notes) > 0 {
			_, _ = w.Write([]byte("ok (degraded)\n"))
			for _, n := range notes {
				_, _ = w.Write([]byte("degraded: " + n + "\n"))
			}
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
