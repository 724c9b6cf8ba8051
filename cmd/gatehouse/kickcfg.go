package main

import (
	"log/slog"

	"github.com/spf13/viper"

	"github.com/gatehouse-iot/gatehouse/kick"
	"github.com/gatehouse-iot/gatehouse/store"
)

// kickBrokers builds the live-session kick targets from kick.* settings: a
// target is configured when its URL is set, and then needs its credentials.
func kickBrokers(v *viper.Viper) ([]kick.Broker, error) {
	var bs []kick.Broker
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
// nothing and its worker idles.
func newKicker(v *viper.Viper, st *store.Store, log *slog.Logger) (*kick.Service, error) {
	bs, err := kickBrokers(v)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name()
	}
	if len(bs) > 0 {
		// Names only: credentials are never logged.
		log.Info("live-session kick enabled", "brokers", names)
	}
	return kick.New(kick.Config{Store: st, Brokers: bs, Log: log})
}
