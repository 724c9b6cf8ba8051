package main

import (
	"time"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// crlValidity reads crl.validity: the CRL's thisUpdate → nextUpdate. The
// list is regenerated at half of it, and on every revocation.
func crlValidity(v *viper.Viper) (time.Duration, error) {
	s := v.GetString(keyCRLValidity)
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Minute || d > 31*24*time.Hour {
		return 0, fault.New(fault.InvalidArgument, "%s: %q is not a duration between 10m and 744h", keyCRLValidity, s)
	}
	return d, nil
}
