// Package series keeps the dashboard's short time series of this replica's
// decision and enrollment counters, in memory and bounded: per minute for
// the last hour and per hour for the last day.
//
// It samples cumulative totals (the Prometheus counters, through Source)
// shortly before each minute ends, and whenever a reader asks, and files
// the growth since the previous sample under the bucket of the sample's
// time. Totals are cumulative, so a skipped or failed
// sample loses nothing: the next one carries the growth, only later. A
// total that shrank was reset (a restarted source): like Prometheus's
// rate(), the new value is all growth since the reset.
package series

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Counts are the counters the charts draw: decisions by result, and
// enrollments (new devices and renewals that succeeded, and either that
// failed).
type Counts struct {
	Allow, Deny, Error              uint64
	Enrolled, Renewed, EnrollFailed uint64
}

// Plus returns c and o added up, counter by counter.
func (c Counts) Plus(o Counts) Counts {
	return Counts{Allow: c.Allow + o.Allow, Deny: c.Deny + o.Deny, Error: c.Error + o.Error,
		Enrolled: c.Enrolled + o.Enrolled, Renewed: c.Renewed + o.Renewed, EnrollFailed: c.EnrollFailed + o.EnrollFailed}
}

// Totals are cumulative counts since the source started. DenyReasons
// counts the decisions that were not allowed (deny and error) by reason
// class.
type Totals struct {
	Counts
	DenyReasons map[string]uint64
}

// Source reads the current cumulative totals. An error skips the sample.
type Source interface {
	Totals() (Totals, error)
}

// Window is the span a Snapshot covers.
type Window string

// The windows: 60 minutes per minute, 24 hours per hour.
const (
	Hour Window = "hour"
	Day  Window = "day"
)

// ParseWindow reads a window name; empty is Hour.
func ParseWindow(s string) (Window, error) {
	switch Window(s) {
	case "", Hour:
		return Hour, nil
	case Day:
		return Day, nil
	}
	return "", fault.New(fault.InvalidArgument, "window must be %q or %q", Hour, Day)
}

// Bucket is one step of a series: the counts that grew during it.
type Bucket struct {
	Start time.Time
	Counts
}

// ReasonCount is how many requests one reason class denied.
type ReasonCount struct {
	Reason string
	Count  uint64
}

// Snapshot is one window of the series, oldest bucket first; the last is
// the current, still growing, step. Buckets nothing was sampled into are
// zero. DenyReasons covers the whole window, most frequent first.
type Snapshot struct {
	Window      Window
	Step        time.Duration
	SampledAt   time.Time // the last successful sample; zero: none yet
	Buckets     []Bucket
	DenyReasons []ReasonCount
}

// Config configures a Series. Source is required.
type Config struct {
	Source Source
	// Lead is how long before each minute ends Run samples; default 1s.
	// Growth is filed under the bucket of the sample that saw it, so what
	// is counted in a minute's last Lead lands in the next minute. One
	// sample a minute keeps the cost low: gathering reads every metric,
	// some from the database (session kicks).
	Lead time.Duration
	// Fresh is how old the last sample may be when a Snapshot is taken
	// before the snapshot samples again; default 1s. It bounds the
	// sampling that readers cause.
	Fresh time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives failed samples; default discards.
	Log *slog.Logger
}

// maxReasons bounds the reason classes one bucket keeps; further classes
// are counted under "other". The metrics contract keeps classes few; this
// keeps memory bounded even if a source does not.
const maxReasons = 32

// Series samples a Source into per-minute and per-hour rings.
type Series struct {
	cfg Config
	// sampling orders samples: totals must be filed in the order they
	// were read, or the older would look like a reset and count twice.
	// It is held while the source is read, which may be slow; mu, which
	// readers need, only while the rings change.
	sampling sync.Mutex
	mu       sync.Mutex
	prev     Totals
	sampled  time.Time
	minutes  ring
	hours    ring
	failing  bool
}

// New returns a Series whose first sample counts everything the source
// counted so far: the source starts with the process, as the series does.
func New(cfg Config) (*Series, error) {
	if cfg.Source == nil {
		return nil, errors.New("series: Source is required")
	}
	if cfg.Lead <= 0 || cfg.Lead >= time.Minute {
		cfg.Lead = time.Second
	}
	if cfg.Fresh <= 0 {
		cfg.Fresh = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Series{cfg: cfg, minutes: newRing(time.Minute, 60), hours: newRing(time.Hour, 24)}, nil
}

// Run samples Lead before every minute ends, until ctx ends.
func (s *Series) Run(ctx context.Context) error {
	for {
		t := time.NewTimer(untilSample(s.cfg.Now(), s.cfg.Lead))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		_ = s.Sample()
	}
}

// untilSample is how long from now until Lead before the minute ends;
// past that point, the next minute's.
func untilSample(now time.Time, lead time.Duration) time.Duration {
	at := now.Truncate(time.Minute).Add(time.Minute - lead)
	if !at.After(now) {
		at = at.Add(time.Minute)
	}
	return at.Sub(now)
}

// Sample reads the source and files the growth since the last sample.
func (s *Series) Sample() error {
	s.sampling.Lock()
	defer s.sampling.Unlock()
	return s.sample()
}

// sample needs s.sampling held.
func (s *Series) sample() error {
	t, err := s.cfg.Source.Totals()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Logged once per failing stretch, not every few seconds.
		if !s.failing {
			s.cfg.Log.Warn("dashboard series: cannot read the counters; charts lag until they can", "err", err)
		}
		s.failing = true
		return err
	}
	s.failing = false
	now := s.cfg.Now()
	// A clock that went back files growth under the latest bucket rather
	// than over an older one still in the ring.
	if now.Before(s.sampled) {
		now = s.sampled
	}
	d := growth(t, s.prev)
	s.minutes.add(now, d)
	s.hours.add(now, d)
	s.prev, s.sampled = t, now
	return nil
}

// Snapshot returns window w (Hour or Day, anything else is Hour), after
// sampling when the last sample is older than Fresh, so what was just
// counted shows. A failed sample still answers, with the buckets so far;
// so does a Snapshot while another sample runs, rather than wait for it.
func (s *Series) Snapshot(w Window) Snapshot {
	s.mu.Lock()
	old := s.sampled.IsZero() || s.cfg.Now().Sub(s.sampled) >= s.cfg.Fresh
	s.mu.Unlock()
	if old && s.sampling.TryLock() {
		_ = s.sample()
		s.sampling.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.minutes
	if w == Day {
		r = &s.hours
	} else {
		w = Hour
	}
	buckets, reasons := r.window(s.cfg.Now())
	return Snapshot{Window: w, Step: r.step, SampledAt: s.sampled, Buckets: buckets, DenyReasons: reasons}
}

// growth is cur minus prev, counter by counter; a counter below its
// previous value was reset, and all of it is growth.
func growth(cur, prev Totals) Totals {
	d := Totals{Counts: Counts{
		Allow: grew(cur.Allow, prev.Allow), Deny: grew(cur.Deny, prev.Deny), Error: grew(cur.Error, prev.Error),
		Enrolled: grew(cur.Enrolled, prev.Enrolled), Renewed: grew(cur.Renewed, prev.Renewed),
		EnrollFailed: grew(cur.EnrollFailed, prev.EnrollFailed),
	}}
	for reason, n := range cur.DenyReasons {
		if g := grew(n, prev.DenyReasons[reason]); g > 0 {
			if d.DenyReasons == nil {
				d.DenyReasons = map[string]uint64{}
			}
			d.DenyReasons[reason] = g
		}
	}
	return d
}

func grew(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// sortReasons orders reason counts by count, most first, then by name.
func sortReasons(m map[string]uint64) []ReasonCount {
	out := make([]ReasonCount, 0, len(m))
	for r, n := range m {
		out = append(out, ReasonCount{Reason: r, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}
