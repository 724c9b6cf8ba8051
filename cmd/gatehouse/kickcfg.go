package main

import (
	"log/slog"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/store"
)

// kickBrokers builds the live-session kick targets from kick.* settings: a
// target is configured when its URL is set, and then needs its credentials;
// Mosquitto (the gatehouse-mosquitto plugin) when enabled, reached through
// the plugin's event streams.
func kickBrokers(v *viper.Viper, streams kick.Streams, log *slog.Logger) ([]kick.Broker, error) {
	var bs []kick.Broker
	if v.GetBool(keyKickMosqEnabled) {
		b, err := kick.NewMosquitto(kick.MosquittoConfig{Name: v.GetString(keyKickMosqName), Streams: streams, Log: log})
		if err != nil {
			return nil, err
		}
		bs = append(bs, b)
	}
	if u := v.GetString(keyKickRabbitURL); u != "" {
		b, err := kick.NewRabbitMQ(kick.RabbitMQConfig{URL: u, User: v.GetString(keyKickRabbitUser), Password: v.GetString(keyKickRabbitPass)})
		if err != nil {
			return nil, err
		}
		bs = append(bs, b)
	}
	if u := v.GetString(keyKickEMQXURL); u != "" {
		b, err := kick.NewEMQX(kick.EMQXConfig{URL: u, APIKey: v.GetString(keyKickEMQXKey), APISecret: v.GetString(keyKickEMQXSecret)})
		if err != nil {
			return nil, err
		}
		bs = append(bs, b)
	}
	if u := v.GetString(keyKickWebhookURL); u != "" {
		b, err := kick.NewWebhook(kick.WebhookConfig{URL: u, Secret: v.GetString(keyKickWebhookSecr)})
		if err != nil {
			return nil, err
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// newKicker returns the kick service; with no target configured it records
// nothing and its worker idles. acks is the Mosquitto target, which the
// hooks give the plugin's acknowledgements to; nil when not configured.
func newKicker(v *viper.Viper, st *store.Store, streams kick.Streams, log *slog.Logger) (_ *kick.Service, acks *kick.Mosquitto, _ error) {
	bs, err := kickBrokers(v, streams, log)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name()
		if m, ok := b.(*kick.Mosquitto); ok {
			acks = m
		}
	}
	if len(bs) > 0 {
		// Names only: credentials are never logged.
		log.Info("live-session kick enabled", "brokers", names)
	}
	svc, err := kick.New(kick.Config{Store: st, Brokers: bs, Log: log})
	return svc, acks, err
}
