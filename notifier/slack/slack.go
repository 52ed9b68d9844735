// Package slack posts incidents to Slack: one Block Kit message per
// incident, updated as the incident changes, with every later event in the
// message's thread.
package slack

import (
	"context"
	"errors"
	"log/slog"

	"github.com/companion/remediator/notifier"
)

// Notifier posts incidents to one Slack channel.
type Notifier struct {
	cfg    Config
	store  notifier.Store
	logger *slog.Logger
}

// New returns a notifier for a validated config and its bot token.
func New(cfg Config, token string, store notifier.Store, logger *slog.Logger) *Notifier {
	return &Notifier{cfg: cfg, store: store, logger: logger}
}

// Notify posts an event of an incident.
func (n *Notifier) Notify(ctx context.Context, ev notifier.Event) error {
	return errors.New("slack: not built yet")
}

// Page posts an escalation step in the incident's thread, mentioning who
// it is for.
func (n *Notifier) Page(ctx context.Context, ev notifier.Event, mentions []string) error {
	return errors.New("slack: not built yet")
}
