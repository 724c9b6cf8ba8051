package main

import (
	"time"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// minMaxStaleness is the smallest bound authz.max_staleness accepts: the
// device view polls every second and the policy view every two, so a bound
// near those intervals would deny on a single slow poll.
const minMaxStaleness = 5 * time.Second

// maxStaleness reads authz.max_staleness: how old this replica's device and
// policy views may grow (no successful sync with the database) before every
// decision is a deny with reason "stale". 0 disables the bound.
func maxStaleness(v *viper.Viper) (time.Duration, error) {
	s := v.GetString(keyMaxStaleness)
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || (d > 0 && d < minMaxStaleness) {
		return 0, fault.New(fault.InvalidArgument, "%s: %q is not 0 (no bound) or a duration of at least %s", keyMaxStaleness, s, minMaxStaleness)
	}
	return d, nil
}
