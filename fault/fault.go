// Package fault gives Gatehouse errors a stable, machine-readable code.
//
// Domain packages return *fault.Error values; only the edges (the HTTP API,
// the CLI) decide what a code means for their protocol. Codes are part of the
// public API: never rename one, only add.
package fault

import (
	"errors"
	"fmt"
)

// Code is a stable identifier for a class of failure.
type Code string

// Codes shared by every package. Keep them lowercase snake_case.
const (
	Internal          Code = "internal"
	InvalidArgument   Code = "invalid_argument"
	NotFound          Code = "not_found"
	AlreadyExists     Code = "already_exists"
	Conflict          Code = "conflict"
	Unauthenticated   Code = "unauthenticated"
	PermissionDenied  Code = "permission_denied"
	TokenInvalid      Code = "token_invalid"
	TokenUsed         Code = "token_used"
	TokenExpired      Code = "token_expired"
	TokenRevoked      Code = "token_revoked"
	CSRInvalid        Code = "csr_invalid"
	KeyTypeNotAllowed Code = "key_type_not_allowed"
	CertInvalid       Code = "certificate_invalid"
	DeviceNotActive   Code = "device_not_active"
	RenewalTooEarly   Code = "renewal_too_early"
	BodyTooLarge      Code = "body_too_large"
	Unavailable       Code = "unavailable"
	// CSRFFailed: a cookie-authenticated change without the session's CSRF
	// token, or a cross-site login.
	CSRFFailed Code = "csrf_failed"
	// ChallengeRequired: a renewal without mutual TLS whose CSR carries no
	// server challenge (POST /api/v1/renew/challenge).
	ChallengeRequired Code = "challenge_required"
	// ChallengeInvalid: the CSR's challenge is unknown, already used, or was
	// issued for another certificate.
	ChallengeInvalid Code = "challenge_invalid"
	// ChallengeExpired: the CSR's challenge outlived its TTL.
	ChallengeExpired Code = "challenge_expired"
	// DeviceIDReserved: the device id is fixed to another unused bootstrap
	// token (or, for a new batch, already enrolled).
	DeviceIDReserved Code = "device_id_reserved"
)

// known is every Code above (a test keeps them in step).
var known = map[Code]bool{
	Internal: true, InvalidArgument: true, NotFound: true, AlreadyExists: true, Conflict: true,
	Unauthenticated: true, PermissionDenied: true, TokenInvalid: true, TokenUsed: true, TokenExpired: true,
	TokenRevoked: true, CSRInvalid: true, KeyTypeNotAllowed: true, CertInvalid: true, DeviceNotActive: true,
	RenewalTooEarly: true, BodyTooLarge: true, Unavailable: true, CSRFFailed: true, ChallengeRequired: true,
	ChallengeInvalid: true, ChallengeExpired: true, DeviceIDReserved: true,
}

// Known reports whether c is one of the codes declared here. A Code is a
// string any caller can make; a metric label takes only known ones, so its
// series stay bounded.
func Known(c Code) bool { return known[c] }

// Error is a failure with a stable code and a message safe to show a client.
// The wrapped cause is for logs only and never rendered.
type Error struct {
	Code    Code
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns an error with the given code and message.
func New(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error with the given code and message that keeps cause for logs.
func Wrap(cause error, code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Cause: cause}
}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
// A nil error has no code.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return Internal
}

// MessageOf returns the client-safe message of err. Errors without a code
// are malfunctions whose details stay in the logs.
func MessageOf(err error) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return "internal error"
}

// Is reports whether err carries code.
func Is(err error, code Code) bool { return err != nil && CodeOf(err) == code }
