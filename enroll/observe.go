package enroll

import (
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
)

// Observer learns the result of each enrollment and renewal the Service
// ran, for metrics (package metrics implements it), so that every front
// (the API, EST) is counted the same way, once, by what the Service did
// rather than by what its HTTP answer looks like. Requests a front refuses
// before calling the Service (a body that does not decode, EST without
// its credentials) are the front's HTTP requests only.
type Observer interface {
	// Enrolled: one call of kind (a Kind* constant) ended with code:
	// CodeOK, CodeRepeated or the fault code of its error.
	Enrolled(kind, code string)
}

// Kinds of call an Observer is told about.
const (
	// KindEnroll: a first enrollment with a bootstrap token (Enroll).
	KindEnroll = "enroll"
	// KindRenew: a renewal of a certificate that has not expired (Renew).
	KindRenew = "renew"
	// KindRenewExpired: a sleepy device's renewal of its expired
	// certificate (Renew, sleepy.go).
	KindRenewExpired = "renew_expired"
	// KindIDevID: a first enrollment with a vendor IDevID.
	KindIDevID = "idevid"
	// KindServerKeygen: an enrollment whose key the server made (EST
	// serverkeygen).
	KindServerKeygen = "serverkeygen"
)

// Kinds is every Kind* constant: the bounded label set of a metric.
func Kinds() []string {
	return []string{KindEnroll, KindRenew, KindRenewExpired, KindIDevID, KindServerKeygen}
}

// Codes an Observer is told besides fault codes.
const (
	// CodeOK: a certificate was issued.
	CodeOK = "ok"
	// CodeRepeated: a retried enrollment was given the certificate its
	// first try issued (Result.Repeated); nothing was issued, so it is no
	// new enrollment, and no failure either.
	CodeRepeated = "repeated"
)

// observe tells the Observer, if any, how one call of kind ended.
func (s *Service) observe(kind string, res Result, err error) {
	if s.cfg.Observer == nil {
		return
	}
	s.cfg.Observer.Enrolled(kind, resultCode(res, err))
}

// resultCode is the code an Observer is told for a call's result.
func resultCode(res Result, err error) string {
	switch {
	case err != nil:
		return string(fault.CodeOf(err))
	case res.Repeated:
		return CodeRepeated
	}
	return CodeOK
}

// KnownCode reports whether code is one an Observer may be told and may
// use as a label: ok, repeated, a fault code, or an IDevID refusal's.
func KnownCode(code string) bool {
	return code == CodeOK || code == CodeRepeated || fault.Known(fault.Code(code)) || idevid.IsCode(fault.Code(code))
}
