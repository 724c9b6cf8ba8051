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

// Diagnostics serves /healthz (the process runs) and /readyz (it can serve:
// the database answers and, when core is set, the decision core is not
// denying everything as stale). It lives on its own listener so probes never
// compete with, or expose, the API.
func Diagnostics(db Pinger, core Staleness) http.Handler {
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
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
