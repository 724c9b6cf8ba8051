package apitypes

import "github.com/gatehouse-iot/gatehouse/fault"

// ErrorBody is the JSON shape of every API error.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries a stable code and a human message.
type ErrorDetail struct {
	Code    fault.Code `json:"code"`
	Message string     `json:"message"`
	// Problems locates each compile error of a policy (policy_invalid).
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one compile error of a policy source. It mirrors
// policy.Problem field for field: the policy package pulls in OPA, which a
// client of these types should not have to.
type Problem struct {
	Module  string `json:"module"` // "policy" or "tests"
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// Version answers GET /api/v1/version.
type Version struct {
	Version string `json:"version"`
}
