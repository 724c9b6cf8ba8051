package metrics

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-iot/gatehouse/crl"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Core is the decision core's state read at scrape time (authz.Authorizer).
type Core interface {
	CacheStats() (hits, misses uint64, entries int)
	Stale() (bool, time.Time)
	PolicyVersion() int64
}

// CRL is the CRL publisher's state (crl.Publisher).
type CRL interface {
	Status() crl.Status
}

// Kicks counts the session-kick queue by status (store.Store).
type Kicks interface {
	CountKicks(ctx context.Context) (map[store.KickStatus]int64, error)
}

// Sources are what Watch reads at each scrape; each may be nil.
type Sources struct {
	Core  Core
	CRL   CRL
	Kicks Kicks
}

// Watch adds the gauges read from src at scrape time. Call it once, when
// the components exist (the core needs Metrics as its observer first).
func (m *Metrics) Watch(src Sources) {
	m.reg.MustRegister(&sourceCollector{m: m, src: src})
}

var (
	descCacheRequests = prometheus.NewDesc("gatehouse_decision_cache_requests_total",
		"Decision cache lookups by result (hit, miss).", []string{"result"}, nil)
	descCacheEntries = prometheus.NewDesc("gatehouse_decision_cache_entries",
		"Decisions held in the decision cache.", nil, nil)
	descStaleness = prometheus.NewDesc("gatehouse_sync_staleness_seconds",
		"Time since the decision core last matched the database (the older of its device and policy views); +Inf before the first sync.", nil, nil)
	descStale = prometheus.NewDesc("gatehouse_sync_stale",
		"1 while the decision core denies every request as stale (authz.max_staleness passed), else 0.", nil, nil)
	descPolicyVersion = prometheus.NewDesc("gatehouse_policy_active_version",
		"The policy version the decision core applies; 0 for none.", nil, nil)
	descCRLNumber = prometheus.NewDesc("gatehouse_crl_number",
		"Number of the installed CRL.", nil, nil)
	descCRLAge = prometheus.NewDesc("gatehouse_crl_age_seconds",
		"Time since the installed CRL's thisUpdate.", nil, nil)
	descCRLEntries = prometheus.NewDesc("gatehouse_crl_entries",
		"Revoked certificates listed in the installed CRL.", nil, nil)
	descKicks = prometheus.NewDesc("gatehouse_session_kicks",
		"Session kicks by status, from the store (counted at most every 5s).", []string{"status"}, nil)
)

// kickStatuses are every status, so each series exists even at 0.
var kickStatuses = []store.KickStatus{store.KickPending, store.KickDone, store.KickFailed, store.KickCancelled}

// sourceCollector reads its sources on each scrape; the kick count, a
// database query, is cached (kickCache).
type sourceCollector struct {
	m     *Metrics
	src   Sources
	kicks kickCache
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheRequests, descCacheEntries, descStaleness, descStale,
		descPolicyVersion, descCRLNumber, descCRLAge, descCRLEntries, descKicks} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.m.cfg.Now()
	if core := c.src.Core; core != nil {
		collectCore(ch, core, now)
	}
	if c.src.CRL != nil {
		collectCRL(ch, c.src.CRL.Status(), now)
	}
	if c.src.Kicks != nil {
		counts, err := c.kicks.get(c.src.Kicks, now, c.m.cfg.KickCountEvery, c.m.cfg.KickCountTimeout)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descKicks, err)
			return
		}
		for _, s := range kickStatuses {
			ch <- prometheus.MustNewConstMetric(descKicks, prometheus.GaugeValue, float64(counts[s]), string(s))
		}
	}
}

func collectCore(ch chan<- prometheus.Metric, core Core, now time.Time) {
	hits, misses, entries := core.CacheStats()
	ch <- prometheus.MustNewConstMetric(descCacheRequests, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(descCacheRequests, prometheus.CounterValue, float64(misses), "miss")
	ch <- prometheus.MustNewConstMetric(descCacheEntries, prometheus.GaugeValue, float64(entries))
	stale, synced := core.Stale()
	age := math.Inf(1)
	if !synced.IsZero() {
		age = max(now.Sub(synced).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(descStaleness, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, boolValue(stale))
	ch <- prometheus.MustNewConstMetric(descPolicyVersion, prometheus.GaugeValue, float64(core.PolicyVersion()))
}

// collectCRL reports the installed list; before the first one there is
// nothing to report, rather than a number 0 that looks like a list.
func collectCRL(ch chan<- prometheus.Metric, st crl.Status, now time.Time) {
	if st.ThisUpdate.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(descCRLNumber, prometheus.GaugeValue, float64(st.Number))
	ch <- prometheus.MustNewConstMetric(descCRLAge, prometheus.GaugeValue, max(now.Sub(st.ThisUpdate).Seconds(), 0))
	ch <- prometheus.MustNewConstMetric(descCRLEntries, prometheus.GaugeValue, float64(st.Entries))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// kickCache serves one count for a while. A failed count is kept as long
// as a good one, so a database that does not answer is asked once per
// period, not once per scrape; concurrent scrapes share one query.
type kickCache struct {
	mu     sync.Mutex
	at     time.Time
	counts map[store.KickStatus]int64
	err    error
}

func (k *kickCache) get(src Kicks, now time.Time, every, timeout time.Duration) (map[store.KickStatus]int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.at.IsZero() && now.Sub(k.at) < every && now.Sub(k.at) >= 0 {
		return k.counts, k.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	k.counts, k.err = src.CountKicks(ctx)
	k.at = now
	return k.counts, k.err
}
