package series

import "time"

// ring holds the last n steps. A slot is reused for the step n steps
// later; its start says which step it holds, so a slot left from an older
// step reads as zero, and idle stretches need no upkeep.
type ring struct {
	step  time.Duration
	slots []slot
}

type slot struct {
	start   time.Time
	counts  Counts
	reasons map[string]uint64
}

func newRing(step time.Duration, n int) ring {
	return ring{step: step, slots: make([]slot, n)}
}

// index is the slot of the step starting at start.
func (r *ring) index(start time.Time) int {
	n := int64(len(r.slots))
	return int(((start.UnixNano()/int64(r.step))%n + n) % n)
}

// add files growth d under the step holding t.
func (r *ring) add(t time.Time, d Totals) {
	start := t.Truncate(r.step)
	sl := &r.slots[r.index(start)]
	if !sl.start.Equal(start) {
		*sl = slot{start: start}
	}
	sl.counts = sl.counts.Plus(d.Counts)
	for reason, n := range d.DenyReasons {
		if _, known := sl.reasons[reason]; !known && len(sl.reasons) >= maxReasons {
			reason = "other"
		}
		if sl.reasons == nil {
			sl.reasons = map[string]uint64{}
		}
		sl.reasons[reason] += n
	}
}

// window returns the n steps up to and including the one holding now,
// oldest first, and the reasons summed over them.
func (r *ring) window(now time.Time) ([]Bucket, []ReasonCount) {
	n := len(r.slots)
	last := now.Truncate(r.step)
	out := make([]Bucket, n)
	reasons := map[string]uint64{}
	for i := range out {
		start := last.Add(-time.Duration(n-1-i) * r.step)
		out[i].Start = start.UTC()
		if sl := &r.slots[r.index(start)]; sl.start.Equal(start) {
			out[i].Counts = sl.counts
			for reason, c := range sl.reasons {
				reasons[reason] += c
			}
		}
	}
	return out, sortReasons(reasons)
}
