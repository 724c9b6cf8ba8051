package series_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/testclock"
	"github.com/gatehouse-iot/gatehouse/series"
)

// counters is a Source the test sets, like the process's counters.
type counters struct {
	mu  sync.Mutex
	t   series.Totals
	err error
}

func (c *counters) Totals() (series.Totals, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	t.DenyReasons = maps.Clone(c.t.DenyReasons)
	return t, c.err
}

// count adds to the counters as decisions and enrollments would.
func (c *counters) count(allow, deny uint64, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Allow += allow
	c.t.Deny += deny
	if deny > 0 {
		if c.t.DenyReasons == nil {
			c.t.DenyReasons = map[string]uint64{}
		}
		c.t.DenyReasons[reason] += deny
	}
}

func (c *counters) set(f func(*series.Totals)) {
	c.mu.Lock()
	f(&c.t)
	c.mu.Unlock()
}

var start = time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)

func newSeries(t *testing.T) (*series.Series, *counters, *testclock.Clock) {
	t.Helper()
	src, clk := &counters{}, testclock.New(start)
	s, err := series.New(series.Config{Source: src, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, src, clk
}

// at finds the bucket starting at t.
func at(t *testing.T, snap series.Snapshot, when time.Time) series.Counts {
	t.Helper()
	for _, b := range snap.Buckets {
		if b.Start.Equal(when) {
			return b.Counts
		}
	}
	t.Fatalf("no bucket starts at %s in %s window", when, snap.Window)
	return series.Counts{}
}

// sum adds up every bucket of a snapshot.
func sum(snap series.Snapshot) series.Counts {
	var c series.Counts
	for _, b := range snap.Buckets {
		c = c.Plus(b.Counts)
	}
	return c
}

func mustSample(t *testing.T, s *series.Series) {
	t.Helper()
	if err := s.Sample(); err != nil {
		t.Fatal(err)
	}
}

func TestWindowsHaveOneBucketPerStep(t *testing.T) {
	s, _, _ := newSeries(t)
	for _, tc := range []struct {
		w     series.Window
		n     int
		step  time.Duration
		first time.Time
	}{
		{series.Hour, 60, time.Minute, time.Date(2026, 3, 1, 11, 1, 0, 0, time.UTC)},
		{series.Day, 24, time.Hour, time.Date(2026, 2, 28, 13, 0, 0, 0, time.UTC)},
	} {
		snap := s.Snapshot(tc.w)
		if snap.Window != tc.w || snap.Step != tc.step || len(snap.Buckets) != tc.n {
			t.Fatalf("%s: window %s step %s, %d buckets; want %d of %s", tc.w, snap.Window, snap.Step, len(snap.Buckets), tc.n, tc.step)
		}
		if !snap.Buckets[0].Start.Equal(tc.first) {
			t.Errorf("%s: first bucket %s, want %s", tc.w, snap.Buckets[0].Start, tc.first)
		}
		for i, b := range snap.Buckets {
			if i > 0 && b.Start.Sub(snap.Buckets[i-1].Start) != tc.step {
				t.Fatalf("%s: bucket %d at %s follows %s", tc.w, i, b.Start, snap.Buckets[i-1].Start)
			}
			if b.Counts != (series.Counts{}) {
				t.Errorf("%s: bucket %s not empty before any traffic: %+v", tc.w, b.Start, b.Counts)
			}
		}
	}
}

func TestGrowthLandsInTheSampleBucket(t *testing.T) {
	s, src, clk := newSeries(t)
	src.count(3, 1, "no_grant")
	mustSample(t, s) // 12:00:30
	clk.Add(40 * time.Second)
	src.count(2, 0, "")
	src.set(func(t *series.Totals) { t.Enrolled, t.Renewed, t.EnrollFailed, t.Error = 4, 1, 2, 1 })
	mustSample(t, s) // 12:01:10
	clk.Set(time.Date(2026, 3, 1, 12, 5, 2, 0, time.UTC))

	hour := s.Snapshot(series.Hour)
	if last := hour.Buckets[59]; !last.Start.Equal(time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)) || last.Counts != (series.Counts{}) {
		t.Errorf("last bucket %s %+v, want 12:05 and empty", last.Start, last.Counts)
	}
	if got, want := at(t, hour, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), (series.Counts{Allow: 3, Deny: 1}); got != want {
		t.Errorf("12:00 bucket %+v, want %+v", got, want)
	}
	if got, want := at(t, hour, time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)), (series.Counts{Allow: 2, Error: 1, Enrolled: 4, Renewed: 1, EnrollFailed: 2}); got != want {
		t.Errorf("12:01 bucket %+v, want %+v", got, want)
	}
	day := s.Snapshot(series.Day)
	if got, want := day.Buckets[23].Counts, (series.Counts{Allow: 5, Deny: 1, Error: 1, Enrolled: 4, Renewed: 1, EnrollFailed: 2}); got != want {
		t.Errorf("12:00 hour %+v, want %+v", got, want)
	}
	if sum(day) != day.Buckets[23].Counts || sum(hour) != day.Buckets[23].Counts {
		t.Errorf("counted twice or lost: hour sum %+v, day sum %+v", sum(hour), sum(day))
	}
}

// A source that restarts (its counters back at zero) counts on: what it
// shows after the reset is all new.
func TestCounterReset(t *testing.T) {
	s, src, clk := newSeries(t)
	src.count(10, 6, "no_grant")
	mustSample(t, s)
	clk.Add(time.Minute)
	src.set(func(t *series.Totals) { *t = series.Totals{} })
	src.count(4, 1, "no_grant")
	mustSample(t, s)
	clk.Add(time.Minute)
	src.count(2, 2, "no_grant")
	mustSample(t, s)
	hour := s.Snapshot(series.Hour)
	for i, want := range []series.Counts{{Allow: 10, Deny: 6}, {Allow: 4, Deny: 1}, {Allow: 2, Deny: 2}} {
		if got := hour.Buckets[57+i].Counts; got != want {
			t.Errorf("bucket %s: %+v, want %+v", hour.Buckets[57+i].Start, got, want)
		}
	}
	if len(hour.DenyReasons) != 1 || hour.DenyReasons[0] != (series.ReasonCount{Reason: "no_grant", Count: 9}) {
		t.Errorf("deny reasons %+v, want no_grant 9", hour.DenyReasons)
	}
}

// What falls out of a window is gone, and a reused slot starts empty.
func TestOldBucketsLeaveTheWindow(t *testing.T) {
	s, src, clk := newSeries(t)
	src.count(7, 2, "stale")
	mustSample(t, s)
	clk.Add(59 * time.Minute)
	if got := sum(s.Snapshot(series.Hour)); got.Allow != 7 {
		t.Fatalf("59 minutes later the hour holds %+v, want allow 7", got)
	}
	clk.Add(time.Minute) // 13:00:30: 12:00 is 60 steps back, outside
	src.count(1, 0, "")
	mustSample(t, s) // the same ring slot as 12:00
	hour := s.Snapshot(series.Hour)
	if got := sum(hour); got != (series.Counts{Allow: 1}) || hour.Buckets[59].Allow != 1 || len(hour.DenyReasons) != 0 {
		t.Errorf("an hour later: sum %+v, last %+v, reasons %+v; want only the new allow", got, hour.Buckets[59].Counts, hour.DenyReasons)
	}
	if got := sum(s.Snapshot(series.Day)); got != (series.Counts{Allow: 8, Deny: 2}) {
		t.Errorf("day %+v, want allow 8 deny 2", got)
	}
	clk.Add(24 * time.Hour)
	if got := sum(s.Snapshot(series.Day)); got != (series.Counts{}) {
		t.Errorf("a day later the day holds %+v", got)
	}
}

func TestDenyReasons(t *testing.T) {
	s, src, clk := newSeries(t)
	src.count(0, 3, "no_grant")
	src.count(0, 1, "not_active")
	mustSample(t, s)
	clk.Add(2 * time.Minute)
	src.count(0, 2, "not_active")
	src.count(0, 1, "bad_request")
	mustSample(t, s)
	want := []series.ReasonCount{{Reason: "no_grant", Count: 3}, {Reason: "not_active", Count: 3}, {Reason: "bad_request", Count: 1}}
	if got := s.Snapshot(series.Hour).DenyReasons; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hour reasons %+v, want %+v (count, then name)", got, want)
	}
	clk.Add(70 * time.Minute) // the hour moved on; the day keeps them
	if got := s.Snapshot(series.Hour).DenyReasons; len(got) != 0 {
		t.Errorf("reasons after the hour passed: %+v", got)
	}
	if got := s.Snapshot(series.Day).DenyReasons; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("day reasons %+v, want %+v", got, want)
	}
}

// A source with ever new reason classes cannot grow a bucket without
// bound: past the cap they count as "other", and nothing is lost.
func TestReasonClassesBounded(t *testing.T) {
	s, src, _ := newSeries(t)
	for i := range 500 {
		src.count(0, 1, fmt.Sprintf("class-%03d", i))
	}
	mustSample(t, s)
	snap := s.Snapshot(series.Hour)
	var total uint64
	var other uint64
	for _, r := range snap.DenyReasons {
		total += r.Count
		if r.Reason == "other" {
			other = r.Count
		}
	}
	if len(snap.DenyReasons) > 33 || total != 500 || other == 0 {
		t.Errorf("%d classes kept, %d denies (%d other); want at most 33 classes and all 500 denies", len(snap.DenyReasons), total, other)
	}
}

// A failed read skips the sample; the next one brings what it missed.
func TestFailedSampleLosesNothing(t *testing.T) {
	s, src, clk := newSeries(t)
	src.count(5, 0, "")
	mustSample(t, s)
	clk.Add(time.Minute)
	src.count(3, 0, "")
	src.set(func(*series.Totals) { src.err = errors.New("gather failed") })
	if err := s.Sample(); err == nil {
		t.Fatal("Sample with a failing source succeeded")
	}
	snap := s.Snapshot(series.Hour) // answers all the same
	if snap.Buckets[59].Allow != 0 || !snap.SampledAt.Equal(start) {
		t.Errorf("after a failed sample: last bucket %+v, sampled at %s", snap.Buckets[59].Counts, snap.SampledAt)
	}
	src.set(func(*series.Totals) { src.err = nil })
	mustSample(t, s)
	if got := s.Snapshot(series.Hour).Buckets[59].Allow; got != 3 {
		t.Errorf("after recovering the current minute has %d allows, want 3", got)
	}
}

// A clock that steps back files growth under the latest bucket, not over
// an older one still in the ring.
func TestClockBack(t *testing.T) {
	s, src, clk := newSeries(t)
	clk.Add(10 * time.Minute)
	src.count(1, 0, "")
	mustSample(t, s) // 12:10:30
	clk.Add(-75 * time.Minute)
	src.count(2, 0, "")
	mustSample(t, s)
	clk.Add(75 * time.Minute)
	hour := s.Snapshot(series.Hour)
	if got := at(t, hour, time.Date(2026, 3, 1, 12, 10, 0, 0, time.UTC)); got.Allow != 3 || sum(hour).Allow != 3 {
		t.Errorf("12:10 %+v, hour %+v; want all 3 allows at 12:10", got, sum(hour))
	}
}

// Snapshot samples when the last sample is older than Fresh, so a reader
// sees what was just counted, but readers cannot make it sample more often.
func TestSnapshotSamplesWhenOld(t *testing.T) {
	s, src, clk := newSeries(t)
	src.count(1, 0, "")
	if got := s.Snapshot(series.Hour).Buckets[59].Allow; got != 1 {
		t.Fatalf("first snapshot: %d allows, want 1", got)
	}
	src.count(1, 0, "")
	clk.Add(500 * time.Millisecond)
	if got := s.Snapshot(series.Hour).Buckets[59].Allow; got != 1 {
		t.Errorf("within Fresh the snapshot sampled again: %d allows", got)
	}
	clk.Add(500 * time.Millisecond)
	if got := s.Snapshot(series.Hour).Buckets[59].Allow; got != 2 {
		t.Errorf("after Fresh: %d allows, want 2", got)
	}
}

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want series.Window
		ok   bool
	}{
		{"", series.Hour, true}, {"hour", series.Hour, true}, {"day", series.Day, true},
		{"Hour", "", false}, {"week", "", false}, {"hour ", "", false}, {"1h", "", false},
	} {
		got, err := series.ParseWindow(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseWindow(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if !tc.ok && !fault.Is(err, fault.InvalidArgument) {
			t.Errorf("ParseWindow(%q) = %q, %v; want invalid_argument", tc.in, got, err)
		}
	}
}

func TestNewRequiresSource(t *testing.T) {
	if _, err := series.New(series.Config{}); err == nil {
		t.Fatal("New without a Source succeeded")
	}
}

// Samplers and readers at once lose and double nothing (run with -race).
func TestConcurrentSamples(t *testing.T) {
	s, src, clk := newSeries(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				src.count(1, 1, "no_grant")
				if i%3 == 0 {
					clk.Add(time.Second)
				}
				if g%2 == 0 {
					_ = s.Sample()
				} else {
					_ = s.Snapshot(series.Window([]string{"hour", "day"}[i%2]))
				}
			}
		})
	}
	wg.Wait()
	mustSample(t, s)
	if got := sum(s.Snapshot(series.Day)); got.Allow != 1600 || got.Deny != 1600 {
		t.Errorf("day after 1600 allows and denies: %+v", got)
	}
	if got := sum(s.Snapshot(series.Hour)); got.Allow != 1600 {
		t.Errorf("hour after 1600 allows: %+v", got)
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	s, _, _ := newSeries(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// blocking is a source whose read waits until released, as a gather
// waiting on the database would.
type blocking struct {
	counters
	entered, release chan struct{}
}

func (b *blocking) Totals() (series.Totals, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.counters.Totals()
}

// A reader does not wait for a slow sample: it answers with what the
// rings hold.
func TestSnapshotDoesNotWaitForASlowSample(t *testing.T) {
	src := &blocking{entered: make(chan struct{}), release: make(chan struct{})}
	clk := testclock.New(start)
	s, err := series.New(series.Config{Source: src, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	src.count(2, 0, "")
	done := make(chan error, 1)
	go func() { done <- s.Sample() }()
	<-src.entered
	got := make(chan series.Snapshot, 1)
	go func() { got <- s.Snapshot(series.Hour) }()
	select {
	case snap := <-got:
		if snap.Buckets[59].Allow != 0 || !snap.SampledAt.IsZero() {
			t.Errorf("snapshot during the first sample: %+v, sampled at %s", snap.Buckets[59].Counts, snap.SampledAt)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Snapshot waited for the running sample")
	}
	close(src.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := s.Snapshot(series.Hour).Buckets[59].Allow; n != 2 {
		t.Errorf("after the sample: %d allows, want 2", n)
	}
}
