package authz

import (
	"context"

	"github.com/gatehouse-iot/gatehouse/internal/loop"
)

// Run keeps the decision state ready until ctx ends: every WarmEvery it
// computes the grants of devices or policies that changed, so the broker's
// requests never wait on the policy engine, and checks staleness, so that
// entering the stale state is logged within WarmEvery even when no broker
// asks. It also announces certificates that expired (announceExpired).
func (a *Authorizer) Run(ctx context.Context) error {
	loop.RunNow(ctx, a.cfg.WarmEvery, nil, func(ctx context.Context) {
		if _, err := a.WarmGrants(ctx); err != nil && ctx.Err() == nil && a.cfg.Log != nil {
			a.cfg.Log.Error("computing device grants failed", "err", err)
		}
		a.Stale()
		a.announceExpired(a.cfg.Now())
	})
	return nil
}
