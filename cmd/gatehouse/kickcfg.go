package main

import (
	"log/slog"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/store"
)

// kickConfig holds the configured live-session kick targets.
type kickConfig struct {
	brokers []kick.Broker
	// mosquitto is also in brokers when configured, else nil: the hooks
	// hand it the plugin's acknowledgements. It is kept here by the code
	// that builds it rather than found again in brokers by its type, so a
	// wrapped or renamed target cannot silently lose its acknowledgements.
	mosquitto *kick.Mosquitto
}

// kickBrokers builds the live-session kick targets from kick.* settings: a
// target is configured when its URL is set, and then needs its credentials;
// Mosquitto (the gatehouse-mosquitto plugin) when enabled, reached through
// the plugin's event streams.
func kickBrokers(v *viper.Viper, streams kick.Streams, log *slog.Logger) (kickConfig, error) {
	var t kickConfig
	if v.GetBool(keyKickMosqEnabled) {
		m, err := kick.NewMosquitto(kick.MosquittoConfig{Name: v.GetString(keyKickMosqName), Streams: streams, Log: log})
		if err != nil {
			return kickConfig{}, err
		}
		t.brokers, t.mosquitto = append(t.brokers, m), m
	}
	if u := v.GetString(keyKickRabbitURL); u != "" {
		b, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: u, User: v.GetString(keyKickRabbitUser), Password: v.GetString(keyKickRabbitPass)})
		if err != nil {
			return kickConfig{}, err
		}
		t.brokers = append(t.brokers, b)
	}
	if u := v.GetString(keyKickEMQXURL); u != "" {
		b, err := kick.NewEMQX(kick.EMQXConfig{URL: u, APIKey: v.GetString(keyKickEMQXKey), APISecret: v.GetString(keyKickEMQXSecret)})
		if err != nil {
			return kickConfig{}, err
		}
		t.brokers = append(t.brokers, b)
	}
	if u := v.GetString(keyKickWebhookURL); u != "" {
		b, err := kick.NewWebhook(kick.WebhookConfig{URL: u, Secret: v.GetString(keyKickWebhookSecr)})
		if err != nil {
			return kickConfig{}, err
		}
		t.brokers = append(t.brokers, b)
	}
	return t, nil
}

// newKicker returns the kick service; with no target configured it records
// nothing and its worker idles. acks is the Mosquitto target, which the
// hooks give the plugin's acknowledgements to; nil when not configured.
func newKicker(v *viper.Viper, st *store.Store, streams kick.Streams, log *slog.Logger) (_ *kick.Service, acks *kick.Mosquitto, _ error) {
	t, err := kickBrokers(v, streams, log)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(t.brokers))
	for i, b := range t.brokers {
		names[i] = b.Name()
	}
	if len(t.brokers) > 0 {
		// Names only: credentials are never logged.
		log.Info("live-session kick enabled", "brokers", names)
	}
	svc, err := kick.New(kick.Config{Store: st, Brokers: t.brokers, Log: log})
	return svc, t.mosquitto, err
}
