package revoke

import (
	"errors"
	"strings"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// Lagging is the error returned beside the result of a change that is
// committed (with its audit event) while one or more of its follow-ups — the
// decision-core refresh, the session kick, the CRL publication — did not
// complete. The change stands: each follow-up catches up on its own (the
// core's poll, the kick queue, the CRL publisher's retry). Callers must
// therefore not treat it as a failure of the change: the API answers 200
// with the messages as warnings, since a 5xx would tell the operator the
// revocation did not happen and invite a retry (harmless — revoking again
// is idempotent — but misleading).
type Lagging struct {
	// Errs are the follow-ups that lag, each a fault.Unavailable.
	Errs []error
}

func (l *Lagging) Error() string {
	return strings.Join(l.Warnings(), "; ")
}

// Unwrap exposes each lagging follow-up to errors.Is/As; the first one
// gives fault.CodeOf its code (unavailable).
func (l *Lagging) Unwrap() []error { return l.Errs }

// Warnings are the operator-facing messages of the lagging follow-ups.
func (l *Lagging) Warnings() []string {
	out := make([]string, len(l.Errs))
	for i, err := range l.Errs {
		out[i] = fault.MessageOf(err)
	}
	return out
}

// Warnings splits the error of a revoke, suspend or reinstate call: the
// messages of a Lagging (the change is committed) and nil, or no warnings
// and err itself (the change failed).
func Warnings(err error) ([]string, error) {
	var l *Lagging
	if errors.As(err, &l) {
		return l.Warnings(), nil
	}
	return nil, err
}

// lagging gathers the non-nil follow-up errors; nil when none lags.
func lagging(errs ...error) error {
	var l Lagging
	for _, err := range errs {
		if err != nil {
			l.Errs = append(l.Errs, err)
		}
	}
	if len(l.Errs) == 0 {
		return nil
	}
	return &l
}
