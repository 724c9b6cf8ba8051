package apitypes

import "time"

// SimulateRequest is the body of POST /api/v1/decisions/simulate. Version
// 0 simulates the active policy.
type SimulateRequest struct {
	Device  string `json:"device"`
	Action  string `json:"action"`
	Topic   string `json:"topic"`
	QoS     int    `json:"qos"`
	Retain  bool   `json:"retain"`
	Version int64  `json:"version"`
}

// SimulateResponse answers POST /api/v1/decisions/simulate. Before
// apitypes it was a map: its keys are in alphabetical order, which the
// fields keep.
type SimulateResponse struct {
	Allow         bool   `json:"allow"`
	Device        string `json:"device"`
	PolicyVersion int64  `json:"policy_version"`
	Reason        string `json:"reason"`
	Rule          string `json:"rule"`
}

// PolicyVersion is one stored policy version; Active marks the one the
// live decision core runs.
type PolicyVersion struct {
	Version   int64     `json:"version"`
	Policy    string    `json:"policy"`
	Tests     string    `json:"tests"`
	Digest    string    `json:"digest"`
	Comment   string    `json:"comment"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	Active    bool      `json:"active"`
}

// PolicyVersionList answers GET /api/v1/policies.
type PolicyVersionList struct {
	Active   int64           `json:"active"`
	Versions []PolicyVersion `json:"versions"`
}

// PolicySource is the body of POST /api/v1/policies and
// /api/v1/policies/validate.
type PolicySource struct {
	Policy  string `json:"policy"`
	Tests   string `json:"tests"`
	Comment string `json:"comment"`
}

// PolicyValidation answers a successful POST /api/v1/policies/validate; a
// policy that does not compile is an error with Problems.
type PolicyValidation struct {
	Valid bool `json:"valid"`
}

// PolicyTestReport answers POST /api/v1/policies/{version}/test. It
// mirrors policy.TestReport, as Problem mirrors policy.Problem; Results is
// null when no test ran.
type PolicyTestReport struct {
	Passed  int                `json:"passed"`
	Failed  int                `json:"failed"`
	Results []PolicyTestResult `json:"results"`
}

// PolicyTestResult is one test rule's outcome.
type PolicyTestResult struct {
	Name     string        `json:"name"`
	Passed   bool          `json:"passed"`
	Error    string        `json:"error,omitempty"`
	Line     int           `json:"line"`
	Duration time.Duration `json:"duration_ns"`
}

// PolicyActivation answers POST /api/v1/policies/{version}/activate.
type PolicyActivation struct {
	Active int64            `json:"active"`
	Tests  PolicyTestReport `json:"tests"`
}

// PolicyActivationRefused is the 422 answer of an activation whose tests
// fail: the usual error and the report that refused it.
type PolicyActivationRefused struct {
	Error ErrorDetail      `json:"error"`
	Tests PolicyTestReport `json:"tests"`
}

// PolicyDiff answers GET /api/v1/policies/diff. Before apitypes it was a
// map: its keys are in alphabetical order, which the fields keep.
type PolicyDiff struct {
	Diff string `json:"diff"`
	From int64  `json:"from"`
	To   int64  `json:"to"`
}
