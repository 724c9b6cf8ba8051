package main

import (
	"testing"

	"github.com/gatehouse-iot/gatehouse/store"
)

type counter struct{ n int }

func (c *counter) Notify() { c.n++ }

func TestChangeDispatch(t *testing.T) {
	for _, c := range []struct {
		topic                string
		devices, policy, crl int
	}{
		{store.TopicDevices, 1, 0, 0},
		{store.TopicPolicy, 0, 1, 0},
		{store.TopicCRL, 0, 0, 1},
		{"something-newer", 0, 0, 0},
		{"", 0, 0, 0},
	} {
		var d, p, l counter
		changeTargets{devices: &d, policy: &p, crl: &l}.dispatch(c.topic)
		if d.n != c.devices || p.n != c.policy || l.n != c.crl {
			t.Errorf("%q woke devices %d, policy %d, crl %d; want %d, %d, %d", c.topic, d.n, p.n, l.n,
				c.devices, c.policy, c.crl)
		}
	}
}
