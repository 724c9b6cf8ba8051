package main

import (
	"strings"
	"testing"

	"github.com/gatehouse-iot/gatehouse/events"
	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/kick"
)

// TestKickConfig: kick targets come from GATEHOUSE_KICK_* (or the file);
// a target with a URL but no credentials stops start-up with a clear error
// that never shows a secret.
func TestKickConfig(t *testing.T) {
	const pass = "S3CRET-password-value"
	cases := []struct {
		name    string
		env     map[string]string
		brokers []string
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"rabbitmq", map[string]string{"GATEHOUSE_KICK_RABBITMQ_URL": "http://rabbit:15672",
			"GATEHOUSE_KICK_RABBITMQ_USER": "gh", "GATEHOUSE_KICK_RABBITMQ_PASSWORD": pass}, []string{"rabbitmq"}, ""},
		{"all three", map[string]string{"GATEHOUSE_KICK_RABBITMQ_URL": "http://rabbit:15672",
			"GATEHOUSE_KICK_RABBITMQ_USER": "gh", "GATEHOUSE_KICK_RABBITMQ_PASSWORD": pass,
			"GATEHOUSE_KICK_EMQX_URL": "https://emqx:18083", "GATEHOUSE_KICK_EMQX_API_KEY": "k", "GATEHOUSE_KICK_EMQX_API_SECRET": pass,
			"GATEHOUSE_KICK_WEBHOOK_URL": "https://bridge/kick", "GATEHOUSE_KICK_WEBHOOK_SECRET": pass},
			[]string{"rabbitmq", "emqx", "webhook"}, ""},
		{"rabbitmq without password", map[string]string{"GATEHOUSE_KICK_RABBITMQ_URL": "http://rabbit:15672",
			"GATEHOUSE_KICK_RABBITMQ_USER": "gh"}, nil, "needs a user and a password"},
		{"password in URL", map[string]string{"GATEHOUSE_KICK_RABBITMQ_URL": "http://gh:" + pass + "@rabbit:15672",
			"GATEHOUSE_KICK_RABBITMQ_USER": "gh", "GATEHOUSE_KICK_RABBITMQ_PASSWORD": pass}, nil, "must not carry credentials"},
		{"emqx without secret", map[string]string{"GATEHOUSE_KICK_EMQX_URL": "http://emqx:18083", "GATEHOUSE_KICK_EMQX_API_KEY": "k"}, nil, "API key and secret"},
		{"mosquitto", map[string]string{"GATEHOUSE_KICK_MOSQUITTO_ENABLED": "true"}, []string{"mosquitto"}, ""},
		{"mosquitto named", map[string]string{"GATEHOUSE_KICK_MOSQUITTO_ENABLED": "true", "GATEHOUSE_KICK_MOSQUITTO_NAME": "edge-1",
			"GATEHOUSE_KICK_WEBHOOK_URL": "https://bridge/kick", "GATEHOUSE_KICK_WEBHOOK_SECRET": pass}, []string{"edge-1", "webhook"}, ""},
		{"mosquitto name only", map[string]string{"GATEHOUSE_KICK_MOSQUITTO_NAME": "edge-1"}, nil, ""},
		{"mosquitto bad name", map[string]string{"GATEHOUSE_KICK_MOSQUITTO_ENABLED": "true", "GATEHOUSE_KICK_MOSQUITTO_NAME": "a/b"}, nil, "must match"},
		{"webhook short secret", map[string]string{"GATEHOUSE_KICK_WEBHOOK_URL": "http://bridge/kick", "GATEHOUSE_KICK_WEBHOOK_SECRET": "short"}, nil, "at least 16 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			v, err := loadConfig(newServeCmd())
			if err != nil {
				t.Fatal(err)
			}
			targets, err := kickBrokers(v, events.NewHub(events.Config{}), nil)
			if tc.wantErr != "" {
				if !fault.Is(err, fault.InvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want invalid_argument with %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), pass) {
					t.Errorf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			acked := false
			for _, b := range targets.brokers {
				names = append(names, b.Name())
				acked = acked || (targets.mosquitto != nil && b == kick.Broker(targets.mosquitto))
			}
			if strings.Join(names, ",") != strings.Join(tc.brokers, ",") {
				t.Errorf("brokers %v, want %v", names, tc.brokers)
			}
			// The Mosquitto target, and only it, receives the plugin's
			// acknowledgements: it must be the one kicking.
			if wantAcks := tc.env["GATEHOUSE_KICK_MOSQUITTO_ENABLED"] == "true"; acked != wantAcks || (targets.mosquitto != nil) != wantAcks {
				t.Errorf("mosquitto acknowledgements target %v (among the brokers: %v), want configured=%v", targets.mosquitto, acked, wantAcks)
			}
		})
	}
}
