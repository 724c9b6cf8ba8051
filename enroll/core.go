package enroll

import (
	"context"
	"time"
)

// Core is this replica's decision state. Enrollment and renewal refresh it
// before they return, as revocation does, so a device that connects right
// after is decided on its new certificate instead of being refused as an
// unknown device (or on its old serial) until the core's next poll. Other
// replicas learn of the change from the store's change announcement
// (PostgreSQL) or their own poll.
type Core interface {
	Sync(ctx context.Context) (int, error)
}

// refreshTimeout bounds the refresh after a commit.
const refreshTimeout = 5 * time.Second

// refresh pushes a committed enrollment or renewal into the decision core.
// The change is durable and its certificate already the device's: a refresh
// that fails must not fail the call (a retry would find the token used, or
// the certificate superseded). It is logged, and the core's own poll applies
// the change within its interval. The refresh outlives a client that hung
// up, so the device finds itself known when it reconnects.
func (s *Service) refresh(ctx context.Context, action, deviceID string) {
	if s.cfg.Core == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	if _, err := s.cfg.Core.Sync(ctx); err != nil {
		s.cfg.Log.Warn(action+" committed, but the decision core did not refresh yet; it will at its next poll",
			"device", deviceID, "err", err)
	}
}
