package authz

// HoldEvalSlots takes every grant-evaluation slot of a, as a storm of
// other evaluations would, until release is called.
func HoldEvalSlots(a *Authorizer) (release func()) {
	for range cap(a.evalSlots) {
		a.evalSlots <- struct{}{}
	}
	return func() {
		for range cap(a.evalSlots) {
			<-a.evalSlots
		}
	}
}

// ColdDevices counts a's active devices without grants under the active
// policy: what WarmGrants has left to do.
func ColdDevices(a *Authorizer) int {
	ap := a.policy.Load()
	a.mu.RLock()
	defer a.mu.RUnlock()
	n := 0
	for _, e := range a.devices {
		if e.active && (ap == nil || !ready(ap, e)) {
			n++
		}
	}
	return n
}
