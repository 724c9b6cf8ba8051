package audit

import (
	"context"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/store"
)

// ChainStore is what Checker needs of the store.
type ChainStore interface {
	VerifyAuditChain(ctx context.Context, since time.Time) (store.AuditVerification, error)
	VerifyAuditChainFrom(ctx context.Context, from store.AuditAnchor) (store.AuditVerification, error)
}

// CheckerConfig configures a Checker; zero fields take the defaults.
type CheckerConfig struct {
	Store ChainStore
	// FullEvery is how long a full walk of the chain is trusted: within it
	// a check reads only the rows added since the last head. Default 10m.
	FullEvery time.Duration
	Now       func() time.Time
}

// DefaultFullEvery bounds how long an edit to an already-checked row can go
// unnoticed by the API's check (the CLI always walks everything).
const DefaultFullEvery = 10 * time.Minute

// Checker answers "does the audit chain hold?" for the API and the UI
// without walking the whole chain on every page view: a full walk at most
// every FullEvery, and in between only what was appended after the last
// head it verified. One check runs at a time, so many viewers cost one walk.
type Checker struct {
	cfg  CheckerConfig
	sem  chan struct{}
	last store.AuditVerification
	full time.Time // when last came from a full walk; zero: none yet
}

// NewChecker returns a Checker over cfg.Store.
func NewChecker(cfg CheckerConfig) *Checker {
	if cfg.FullEvery <= 0 {
		cfg.FullEvery = DefaultFullEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Checker{cfg: cfg, sem: make(chan struct{}, 1)}
}

// VerifyAuditChain checks the chain; with since set it walks that window
// as asked, uncached, and only when no other check runs (else
// fault.Unavailable). Checked counts every row verified since the last full
// walk, so it reads like a full walk's count.
func (c *Checker) VerifyAuditChain(ctx context.Context, since time.Time) (store.AuditVerification, error) {
	if !since.IsZero() {
		// A window is walked as asked, uncached, so it does not queue:
		// a caller asking for many windows at once would otherwise keep the
		// cached check (the audit page's badge) waiting behind them.
		select {
		case c.sem <- struct{}{}:
			defer func() { <-c.sem }()
		default:
			return store.AuditVerification{}, fault.New(fault.Unavailable, "an audit chain check is running; retry shortly")
		}
		return c.cfg.Store.VerifyAuditChain(ctx, since)
	}
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return store.AuditVerification{}, ctx.Err()
	}
	now := c.cfg.Now()
	if c.full.IsZero() || !c.last.OK || now.Sub(c.full) >= c.cfg.FullEvery {
		res, err := c.cfg.Store.VerifyAuditChain(ctx, time.Time{})
		if err != nil {
			return res, err
		}
		c.last, c.full = res, now
		return res, nil
	}
	if c.last.HeadSeq == 0 {
		// Nothing was chained at the last walk: walk again, it is short.
		res, err := c.cfg.Store.VerifyAuditChain(ctx, time.Time{})
		if err != nil {
			return res, err
		}
		c.last = res
		return res, nil
	}
	res, err := c.cfg.Store.VerifyAuditChainFrom(ctx, store.AuditAnchor{Seq: c.last.HeadSeq, Hash: c.last.HeadHash})
	if err != nil {
		return res, err
	}
	res.Checked += c.last.Checked
	if res.OK {
		c.last = res
	} else {
		// Broken: the next check walks everything again.
		c.full = time.Time{}
	}
	return res, nil
}
