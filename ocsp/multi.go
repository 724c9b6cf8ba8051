package ocsp

import "context"

// Multi answers for several issuers: the current intermediate and the
// retired ones (ca rotate), each through its own Responder and delegated
// responder certificate. A request goes to each in turn until one does not
// refuse it as another issuer's; a request mixing issuers is refused.
type Multi []*Responder

// Respond answers with the first responder whose issuer the request names.
func (m Multi) Respond(ctx context.Context, der []byte) Answer {
	var a Answer
	for _, r := range m {
		if a = r.Respond(ctx, der); a.Status != Unauthorized {
			return a
		}
	}
	return a
}
