package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/auth"
	"github.com/gatehouse-iot/gatehouse/est"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/idevid"
	"github.com/gatehouse-iot/gatehouse/policy"
)

// statusOf is the one place where fault codes become HTTP statuses.
func statusOf(code fault.Code) int {
	switch code {
	case fault.InvalidArgument, fault.CSRInvalid, fault.KeyTypeNotAllowed:
		return http.StatusBadRequest
	case fault.Unauthenticated, fault.TokenInvalid, fault.CertInvalid,
		fault.ChallengeRequired, fault.ChallengeInvalid, fault.ChallengeExpired:
		return http.StatusUnauthorized
	case fault.PermissionDenied, fault.TokenRevoked, fault.DeviceNotActive, fault.CSRFFailed:
		return http.StatusForbidden
	case fault.NotFound:
		return http.StatusNotFound
	case fault.AlreadyExists, fault.Conflict, fault.TokenUsed, fault.RenewalTooEarly, fault.DeviceIDReserved:
		return http.StatusConflict
	case policy.Invalid:
		return http.StatusBadRequest
	case policy.TestsFailed, policy.EvalFailed, policy.Timeout:
		return http.StatusUnprocessableEntity
	case auth.LoginThrottled:
		return http.StatusTooManyRequests
	case fault.TokenExpired:
		return http.StatusGone
	case fault.BodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case fault.Unavailable:
		return http.StatusServiceUnavailable
	case est.TLSRequired:
		return http.StatusForbidden
	case idevid.UnknownVendor:
		// Like a missing credential: on EST the 401 names the Basic realm,
		// and the device may fall back to a bootstrap token.
		return http.StatusUnauthorized
	case idevid.Invalid, idevid.Revoked, idevid.CRLStale, idevid.NotAllowed, idevid.Used:
		return http.StatusForbidden
	case est.NotImplemented:
		return http.StatusNotImplemented
	case "method_not_allowed":
		return http.StatusMethodNotAllowed
	case "unsupported_media_type":
		return http.StatusUnsupportedMediaType
	default:
		return http.StatusInternalServerError
	}
}

// errorHandler renders every error the same way. Echo's own errors (no
// route, wrong method, body limit) get codes too, so clients never parse
// free text.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var he *echo.HTTPError
		var body apitypes.ErrorBody
		switch {
		case errors.As(err, &he):
			body.Error = echoError(he)
		default:
			body.Error = apitypes.ErrorDetail{Code: fault.CodeOf(err), Message: fault.MessageOf(err)}
			var ce *policy.CompileError
			if errors.As(err, &ce) {
				body.Error.Problems = problems(ce.Problems)
			}
		}
		status := statusOf(body.Error.Code)
		if status >= 500 && status != http.StatusNotImplemented {
			// Only malfunctions are logged with their cause; client mistakes
			// are not worth a log line each, and causes may hold input.
			log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "request_id", c.Get(ctxRequestID), "err", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		if strings.HasPrefix(c.Request().URL.Path, est.Prefix+"/") {
			estError(c, status, body.Error)
			return
		}
		_ = c.JSON(status, body)
	}
}

// estRetryAfter is the seconds a 503 tells an EST client to wait.
const estRetryAfter = "5"

// estError renders an EST error as text, as RFC 7030 §4.2.3 has it: the
// stable code first, then the message. A 401 names the Basic realm, which
// is how an EST client learns to send its bootstrap token.
func estError(c echo.Context, status int, e apitypes.ErrorDetail) {
	switch status {
	case http.StatusUnauthorized:
		c.Response().Header().Set("WWW-Authenticate", `Basic realm="`+est.Realm+`"`)
	case http.StatusServiceUnavailable:
		// RFC 7030 §4.2.3: an EST client waits as told and retries (the
		// same token and key get the same certificate). Mostly a token
		// another request holds, which resolves within enroll's ClaimWait.
		c.Response().Header().Set("Retry-After", estRetryAfter)
	}
	_ = c.String(status, string(e.Code)+": "+e.Message+"\n")
}

// problems copies a policy's compile errors into their wire shape; the
// conversion stops compiling if policy.Problem and apitypes.Problem drift.
func problems(ps []policy.Problem) []apitypes.Problem {
	out := make([]apitypes.Problem, len(ps))
	for i, p := range ps {
		out[i] = apitypes.Problem(p)
	}
	return out
}

func echoError(he *echo.HTTPError) apitypes.ErrorDetail {
	switch he.Code {
	case http.StatusNotFound:
		return apitypes.ErrorDetail{Code: fault.NotFound, Message: "no such endpoint"}
	case http.StatusMethodNotAllowed:
		return apitypes.ErrorDetail{Code: "method_not_allowed", Message: "method not allowed on this endpoint"}
	case http.StatusRequestEntityTooLarge:
		return apitypes.ErrorDetail{Code: fault.BodyTooLarge, Message: "request body is too large"}
	case http.StatusUnsupportedMediaType:
		return apitypes.ErrorDetail{Code: "unsupported_media_type", Message: "send application/json"}
	case http.StatusUnauthorized:
		return apitypes.ErrorDetail{Code: fault.Unauthenticated, Message: "authentication required"}
	case http.StatusBadRequest:
		return apitypes.ErrorDetail{Code: fault.InvalidArgument, Message: "bad request"}
	}
	if he.Code >= 400 && he.Code < 500 {
		return apitypes.ErrorDetail{Code: fault.InvalidArgument, Message: http.StatusText(he.Code)}
	}
	return apitypes.ErrorDetail{Code: fault.Internal, Message: "internal error"}
}
