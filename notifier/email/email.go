// Package email sends incident notifications over SMTP.
package email

import (
	"context"
	"errors"
	"log/slog"

	"github.com/companion/remediator/notifier"
)

// Sender sends notification emails through one SMTP server.
type Sender struct {
	cfg    Config
	logger *slog.Logger
}

// New returns a sender for a validated config and its password.
func New(cfg Config, password string, logger *slog.Logger) (*Sender, error) {
	return &Sender{cfg: cfg, logger: logger}, nil
}

// Send emails an event to the addresses in to.
func (s *Sender) Send(ctx context.Context, to []string, ev notifier.Event) error {
	return errors.New("email: not built yet")
}
