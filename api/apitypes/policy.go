package apitypes

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
