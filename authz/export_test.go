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
