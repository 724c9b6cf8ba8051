package hooks_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/hooks"
)

// vmqServe sends a hook request as vmq_webhooks does: only Content-Type
// and vernemq-hook, the secret as basic auth from the endpoint URL's
// userinfo (vmq_webhooks_plugin.erl call_endpoint).
func vmqServe(t *testing.T, h *hooks.Handler, hook, body string) string {
	t.Helper()
	req := httptest.NewRequest("POST", "/hooks/vernemq", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("vernemq-hook", hook)
	req.SetBasicAuth("gatehouse", secret)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: VerneMQ reads any other status as an error", rec.Code)
	}
	return rec.Body.String()
}

// vmqSubscription is one filter as VerneMQ holds it after the hook.
type vmqSubscription struct {
	QoS            int
	Refused        bool
	NoLocal, Rap   bool
	RetainHandling string
}

// decodeAsVerneMQ reads an auth_on_subscribe_m5 answer the way
// vmq_webhooks_plugin.erl does (handle_response/3, normalize_modifiers/3,
// normalize_sub_topics/2): "ok" means the filters under modifiers.topics,
// or the requested ones unchanged when there are none — a top-level
// "topics" is not read; a QoS outside 0..2 refuses the filter; a granted
// filter's omitted options take their defaults. {"error":…} refuses the
// whole SUBSCRIBE.
func decodeAsVerneMQ(t *testing.T, answer string, requested map[string]vmqSubscription) map[string]vmqSubscription {
	t.Helper()
	var resp struct {
		Result    json.RawMessage `json:"result"`
		Modifiers struct {
			Topics []struct {
				Topic          string  `json:"topic"`
				QoS            int     `json:"qos"`
				NoLocal        *bool   `json:"no_local"`
				Rap            *bool   `json:"rap"`
				RetainHandling *string `json:"retain_handling"`
			} `json:"topics"`
		} `json:"modifiers"`
	}
	if err := json.Unmarshal([]byte(answer), &resp); err != nil {
		t.Fatalf("answer %q: %v", answer, err)
	}
	out := map[string]vmqSubscription{}
	switch string(resp.Result) {
	case `"ok"`:
	case `"next"`:
		t.Fatalf("answer passes the decision on: %s", answer)
	default:
		for f := range requested {
			out[f] = vmqSubscription{QoS: 135, Refused: true}
		}
		return out
	}
	if len(resp.Modifiers.Topics) == 0 {
		return requested
	}
	for _, m := range resp.Modifiers.Topics {
		if m.QoS < 0 || m.QoS > 2 {
			out[m.Topic] = vmqSubscription{QoS: m.QoS, Refused: true}
			continue
		}
		s := vmqSubscription{QoS: m.QoS, RetainHandling: "send_retain"}
		if m.NoLocal != nil {
			s.NoLocal = *m.NoLocal
		}
		if m.Rap != nil {
			s.Rap = *m.Rap
		}
		if m.RetainHandling != nil {
			s.RetainHandling = *m.RetainHandling
		}
		out[m.Topic] = s
	}
	return out
}

// TestVerneMQSubscribeM5DecodedAsVerneMQ: an MQTT 5 SUBSCRIBE to the
// device's own command filter (with options) and to "#", answered and then
// read back the way VerneMQ reads it. "#" must never be granted; with
// VerneMQ ≥ 2.2.0 declared the own filter is kept with its options, without
// it the SUBSCRIBE is refused whole (older VerneMQ may subscribe a 135).
func TestVerneMQSubscribeM5DecodedAsVerneMQ(t *testing.T) {
	const own = "fleets/plant/devices/dev1/cmd/#"
	body := `{"username":"dev1","mountpoint":"","client_id":"dev1","topics":[` +
		`{"topic":"` + own + `","qos":1,"no_local":true,"rap":true,"retain_handling":"send_if_new_sub"},` +
		`{"topic":"#","qos":0,"no_local":false,"rap":false,"retain_handling":"send_retain"}],"properties":{}}`
	requested := map[string]vmqSubscription{
		own: {QoS: 1, NoLocal: true, Rap: true, RetainHandling: "send_if_new_sub"},
		"#": {QoS: 0, RetainHandling: "send_retain"},
	}
	for _, tc := range []struct {
		name      string
		perFilter bool
		wantOwn   vmqSubscription
	}{
		{"vernemq 2.2", true, vmqSubscription{QoS: 1, NoLocal: true, Rap: true, RetainHandling: "send_if_new_sub"}},
		{"older vernemq", false, vmqSubscription{QoS: 135, Refused: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := hooks.New(hooks.Config{Authorizer: newAuthorizer(t), Secret: secret, VerneMQPerFilterSuback: tc.perFilter})
			if err != nil {
				t.Fatal(err)
			}
			answer := vmqServe(t, h, "auth_on_subscribe_m5", body)
			got := decodeAsVerneMQ(t, answer, requested)
			if s := got["#"]; !s.Refused || s.QoS != 135 {
				t.Errorf(`"#" as VerneMQ reads %s: %+v, want refused with 135`, answer, s)
			}
			if s := got[own]; s != tc.wantOwn {
				t.Errorf("own filter as VerneMQ reads %s: %+v, want %+v", answer, s, tc.wantOwn)
			}
		})
	}
}

// TestVerneMQListenerType: username is the certificate identity only on
// TLS listeners (with use_identity_as_username); a request naming any
// other listener is denied, one without the field is decided as before.
func TestVerneMQListenerType(t *testing.T) {
	h := newHandler(t, hooks.MosquittoStatus)
	for _, tc := range []struct {
		listener string // JSON value, "" for absent
		allow    bool
	}{
		{`"mqtts"`, true}, {`"mqttwss"`, true}, {`null`, true}, {"", true},
		{`"mqtt"`, false}, {`"mqttws"`, false}, {`"vmq"`, false}, {`""`, false}, {`"MQTTS"`, false},
	} {
		body := `{"peer_addr":"127.0.0.1","peer_port":50123,"mountpoint":"","client_id":"dev1","username":"dev1",` +
			`"password":null,"clean_start":true,"properties":{},"listener_addr":"0.0.0.0","listener_port":8883`
		if tc.listener != "" {
			body += `,"listener_type":` + tc.listener
		}
		body += "}"
		answer := vmqServe(t, h, "auth_on_register_m5", body)
		if got := allowedBy("vernemq", 200, answer); got != tc.allow {
			t.Errorf("listener_type %s: allowed = %v, want %v (%s)", tc.listener, got, tc.allow, answer)
		}
	}
}

// TestVerneMQLargePublish: VerneMQ's max_message_size is unlimited by
// default and the payload travels base64 encoded, so a 1 MiB publish is a
// ~1.4 MB body. It must be decided like a small one, not refused for size.
func TestVerneMQLargePublish(t *testing.T) {
	h := newHandler(t, hooks.MosquittoStatus)
	payload := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 1<<20)))
	for _, tc := range []struct {
		hook, topic, extra string
		allow              bool
	}{
		{"auth_on_publish", "fleets/plant/devices/dev1/telemetry/t", "", true},
		{"auth_on_publish_m5", "fleets/plant/devices/dev1/telemetry/t", `,"properties":{}`, true},
		{"auth_on_publish", "fleets/plant/devices/dev2/telemetry/t", "", false},
	} {
		body := `{"username":"dev1","mountpoint":"","client_id":"dev1","qos":1,"topic":"` + tc.topic +
			`","payload":"` + payload + `","retain":false` + tc.extra + `}`
		answer := vmqServe(t, h, tc.hook, body)
		if got := allowedBy("vernemq", 200, answer); got != tc.allow {
			t.Errorf("%s %s with a 1 MiB payload: allowed = %v, want %v (%s)", tc.hook, tc.topic, got, tc.allow, answer)
		}
	}
	// The rest of the body is still capped.
	big := `{"username":"dev1","mountpoint":"","client_id":"dev1","qos":1,"topic":"fleets/plant/devices/dev1/telemetry/t",` +
		`"padding":"` + strings.Repeat("x", 70<<10) + `","retain":false}`
	if answer := vmqServe(t, h, "auth_on_publish", big); allowedBy("vernemq", 200, answer) {
		t.Errorf("a body over the cap outside the payload was allowed")
	}
}

// countingReader counts the bytes the handler pulled from the request body.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestVerneMQUnauthenticatedBodyCapped: the payload is exempt from the body
// cap only for the broker. A caller without the secret must not make
// Gatehouse stream hundreds of MiB per request: its body is read no further
// than the cap, then denied.
func TestVerneMQUnauthenticatedBodyCapped(t *testing.T) {
	h := newHandler(t, hooks.MosquittoStatus)
	payload := strings.Repeat("A", 8<<20)
	body := &countingReader{r: strings.NewReader(`{"username":"dev1","mountpoint":"","client_id":"dev1","qos":1,` +
		`"topic":"fleets/plant/devices/dev1/telemetry/t","payload":"` + payload + `","retain":false}`)}
	req := httptest.NewRequest("POST", "/hooks/vernemq", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("vernemq-hook", "auth_on_publish")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if allowedBy("vernemq", rec.Code, rec.Body.String()) {
		t.Fatalf("unauthenticated publish allowed: %s", rec.Body.String())
	}
	if body.n > 1<<20 {
		t.Errorf("read %d bytes of an unauthenticated body; want at most the cap", body.n)
	}
}

// TestVerneMQSubscribeAllRefusedIsError: when no filter is granted the
// answer is the explicit error, never "ok" with every filter at 128/135.
// The SUBACK is the same (vmq_mqtt_fsm / vmq_mqtt5_fsm answer an error
// with "not authorized" for every filter), but VerneMQ's other caller of
// the hook, reauthorize_subscriptions in vmq_server (one filter per call), adds
// whatever an "ok" lists — {Topic, 135} included — and removes the
// subscription only on an error.
func TestVerneMQSubscribeAllRefusedIsError(t *testing.T) {
	for _, perFilter := range []bool{false, true} {
		h, err := hooks.New(hooks.Config{Authorizer: newAuthorizer(t), Secret: secret, VerneMQPerFilterSuback: perFilter})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ hook, body string }{
			{"auth_on_subscribe", `{"username":"dev1","mountpoint":"","client_id":"dev1","topics":[{"topic":"#","qos":0}]}`},
			{"auth_on_subscribe", `{"username":"dev1","mountpoint":"","client_id":"dev1","topics":[{"topic":"#","qos":0},{"topic":"fleets/plant/devices/dev2/cmd/#","qos":1}]}`},
			{"auth_on_subscribe_m5", `{"username":"dev1","mountpoint":"","client_id":"dev1","topics":[` +
				`{"topic":"#","qos":0,"no_local":false,"rap":false,"retain_handling":"send_retain"}],"properties":{}}`},
		} {
			if got := vmqServe(t, h, tc.hook, tc.body); strings.TrimSpace(got) != `{"result":{"error":"not_allowed"}}` {
				t.Errorf("per-filter %v, %s %s: answer %s, want the explicit error", perFilter, tc.hook, tc.body, got)
			}
		}
	}
}
