package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/gatehouse-iot/gatehouse/store"
)

// changeTargets are the loops a change announcement wakes.
type changeTargets struct {
	devices, policy, crl interface{ Notify() }
}

// dispatch wakes the loop that reloads what topic names; unknown topics
// (from a newer replica) are ignored, its poll still covers them.
func (c changeTargets) dispatch(topic string) {
	switch topic {
	case store.TopicDevices:
		c.devices.Notify()
	case store.TopicPolicy:
		c.policy.Notify()
	case store.TopicCRL:
		c.crl.Notify()
	}
}

// listenChanges follows other replicas' change announcements (PostgreSQL
// LISTEN/NOTIFY) until ctx ends. It never fails the server: without
// announcements (SQLite, or a listener that gave up) the polls still apply
// every change, only later.
func listenChanges(ctx context.Context, st *store.Store, c changeTargets, log *slog.Logger) error {
	err := st.Listen(ctx, c.dispatch)
	switch {
	case errors.Is(err, store.ErrNoListen):
		// SQLite: one process, which applies its own changes directly.
	case err != nil && ctx.Err() == nil:
		log.Error("change notifications stopped; relying on polls", "err", err)
	}
	return nil
}
