package authz

import (
	"sync"
	"time"
)

// DeniedRequest is one deny kept for operators: what was asked and why it
// was refused.
type DeniedRequest struct {
	At            time.Time
	Device        string
	ClientID      string
	Action        Action
	Topic         string
	QoS           int
	Retain        bool
	Reason        string
	PolicyVersion int64
	// Error is set when the deny came from a malfunction, not a rule.
	Error string
}

// recentDenies is a fixed ring of the last denies. Allows never touch it,
// so the hot allow path pays nothing; a deny pays one short critical section
// and no allocation beyond the copied strings it already holds.
type recentDenies struct {
	mu   sync.Mutex
	buf  []DeniedRequest
	next int
	full bool
}

// defaultRecentDenies bounds the ring; the dashboard shows a page of it.
const defaultRecentDenies = 256

func newRecentDenies(n int) *recentDenies {
	if n <= 0 {
		n = defaultRecentDenies
	}
	return &recentDenies{buf: make([]DeniedRequest, n)}
}

func (r *recentDenies) add(d DeniedRequest) {
	r.mu.Lock()
	r.buf[r.next] = d
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// list returns the denies newest first, those of device only when device is
// set, at most limit (all when limit <= 0).
func (r *recentDenies) list(device string, limit int) []DeniedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := []DeniedRequest{}
	for i := range n {
		d := r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
		if device != "" && d.Device != device {
			continue
		}
		out = append(out, d)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// RecentDenies returns the last denies this process made, newest first:
// all devices when device is empty, at most limit (all kept when limit <= 0).
// The ring holds the last 256 (Config.RecentDenies) and is not persisted.
func (a *Authorizer) RecentDenies(device string, limit int) []DeniedRequest {
	return a.denies.list(device, limit)
}

func (a *Authorizer) recordDeny(req Request, d Decision, err error) {
	dr := DeniedRequest{At: a.cfg.Now().UTC(), Device: d.Device, ClientID: req.ClientID, Action: req.Action,
		Topic: req.Topic, QoS: req.QoS, Retain: req.Retain, Reason: d.Reason, PolicyVersion: d.PolicyVersion}
	if dr.Device == "" {
		dr.Device = req.Identity
	}
	if err != nil {
		dr.Error = err.Error()
	}
	a.denies.add(dr)
}
