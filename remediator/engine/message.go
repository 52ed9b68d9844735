package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/alertmanager/template"
)

// PayloadVersion is the webhook payload version Alertmanager 0.25 to 0.35
// sends.
const PayloadVersion = "4"

// Message is the body Alertmanager's webhook receiver posts: the template
// data with the version, group key and count of truncated alerts beside it.
// It mirrors notify/webhook.Message, whose package would pull all of
// Alertmanager's notifier integrations into this binary.
type Message struct {
	*template.Data

	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// PayloadError is an input that can never succeed: the handler answers 400
// with its text.
type PayloadError struct{ Err error }

func (e *PayloadError) Error() string { return e.Err.Error() }
func (e *PayloadError) Unwrap() error { return e.Err }

// Decode reads one webhook body. Unknown fields are accepted, because every
// Alertmanager release may add some (0.35 added notification_reason and
// routeLabels) and a 4xx makes Alertmanager drop the notification; a wrong
// version, a missing alerts list or malformed JSON are PayloadErrors.
func Decode(r io.Reader) (*Message, error) {
	var m Message
	dec := json.NewDecoder(r)
	if err := dec.Decode(&m); err != nil {
		return nil, &PayloadError{Err: fmt.Errorf("decode webhook payload: %w", err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &PayloadError{Err: errors.New("decode webhook payload: data after the JSON object")}
	}
	if m.Version != PayloadVersion {
		return nil, &PayloadError{Err: fmt.Errorf(
			"unsupported webhook payload version %q: want %q (Alertmanager 0.25 to 0.35)",
			m.Version, PayloadVersion)}
	}
	if m.Data == nil || m.Alerts == nil {
		return nil, &PayloadError{Err: errors.New("webhook payload has no alerts list")}
	}
	return &m, nil
}
