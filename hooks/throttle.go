package hooks

import (
	"log/slog"
	"sync"
	"time"
)

// throttledLog reports unauthenticated hook requests without letting their
// rate set the log's: the first request after a quiet period is logged at
// once, the ones that follow within every are counted and reported in one
// line when the period ends. Each line carries the count it stands for, so
// the counts of all lines add up to the requests denied.
type throttledLog struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	last    time.Time // when the last line was written
	pending int       // requests counted since that line
	armed   bool      // a flush is scheduled
	dialect string    // the last pending request's dialect and caller
	remote  string
}

func newThrottledLog(log *slog.Logger, every time.Duration) *throttledLog {
	return &throttledLog{log: log, every: every}
}

// note counts one unauthenticated request.
func (l *throttledLog) note(dialect, remote string) {
	l.mu.Lock()
	now := time.Now()
	if !l.armed && now.Sub(l.last) >= l.every {
		l.last = now
		l.mu.Unlock()
		l.write(1, dialect, remote)
		return
	}
	l.pending++
	l.dialect, l.remote = dialect, remote
	if !l.armed {
		l.armed = true
		time.AfterFunc(l.last.Add(l.every).Sub(now), l.flush)
	}
	l.mu.Unlock()
}

// flush writes the count gathered since the last line.
func (l *throttledLog) flush() {
	l.mu.Lock()
	n, dialect, remote := l.pending, l.dialect, l.remote
	l.pending, l.armed, l.last = 0, false, time.Now()
	l.mu.Unlock()
	if n > 0 {
		l.write(n, dialect, remote)
	}
}

func (l *throttledLog) write(n int, dialect, remote string) {
	l.log.Warn("unauthenticated hook requests denied", "count", n, "every", l.every.String(),
		"last_dialect", dialect, "last_remote", remote)
}
