package dispatch

import (
	"errors"
	"fmt"

	"github.com/companion/remediator/notifier/email"
	"github.com/companion/remediator/notifier/escalation"
	"github.com/companion/remediator/notifier/slack"
)

// Config is the `notify:` section of the remediator's config file. Slack
// and email are off unless their sections are present; escalation chains
// always run and fall back to the defaults of escalation.DefaultConfig.
type Config struct {
	Slack      *slack.Config     `yaml:"slack"`
	Email      *email.Config     `yaml:"email"`
	Escalation escalation.Config `yaml:"escalation"`
	// QueueSize bounds the events waiting for each integration; an event
	// beyond it is dropped and counted, never waited for.
	QueueSize int `yaml:"queue_size"`
}

// DefaultQueueSize is the default of Config.QueueSize.
const DefaultQueueSize = 1024

// DefaultConfig returns the config of an absent `notify:` section: console
// and log only, default escalation chains.
func DefaultConfig() Config {
	var c Config
	c.ApplyDefaults()
	return c
}

// UnmarshalYAML decodes the section, keeping the decoder's strictness
// (KnownFields), and applies the defaults.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Config
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	c.ApplyDefaults()
	return nil
}

// ApplyDefaults fills every unset field with its default. It is safe to call
// more than once, and New calls it too.
func (c *Config) ApplyDefaults() {
	if c.Slack != nil {
		c.Slack.ApplyDefaults()
	}
	if c.Email != nil {
		c.Email.ApplyDefaults()
	}
	c.Escalation.ApplyDefaults()
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
}

// Validate reports every problem of the section at once, each prefixed
// with its path below `notify`.
func (c Config) Validate() error {
	var errs []error
	if c.Slack != nil {
		errs = append(errs, prefixed("notify.slack", c.Slack.Validate())...)
	}
	if c.Email != nil {
		errs = append(errs, prefixed("notify.email", c.Email.Validate())...)
	}
	errs = append(errs, prefixed("notify.escalation", c.Escalation.Validate())...)
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("notify.queue_size %d: must be positive", c.QueueSize))
	}
	return errors.Join(errs...)
}

// prefixed splits a joined error and puts prefix before each part.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	out := make([]error, 0, len(parts))
	for _, p := range parts {
		out = append(out, fmt.Errorf("%s: %w", prefix, p))
	}
	return out
}
