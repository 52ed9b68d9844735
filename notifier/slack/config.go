package slack

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/companion/remediator/notifier"
)

// Config is the Slack integration's part of the notify configuration.
type Config struct {
	// TokenFile is a file holding the bot token (xoxb-...).
	TokenFile string `yaml:"token_file"`
	// TokenEnv names an environment variable holding the bot token.
	TokenEnv string `yaml:"token_env"`
	// Channel is the channel ID (C0123) or name each incident's message and
	// thread go to.
	Channel string `yaml:"channel"`
	// APIURL overrides Slack's Web API endpoint, for tests and proxies.
	APIURL string `yaml:"api_url"`
	// Timeout bounds one API call.
	Timeout time.Duration `yaml:"timeout"`
	// RetryBackoff is the first wait after a failed call; it doubles up to
	// a minute. A rate limit waits as long as Slack asks instead.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// RetryFor is how long one delivery is retried before Slack counts as
	// down and escalation steps go out by email instead.
	RetryFor time.Duration `yaml:"retry_for"`
}

// Defaults of Config.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultRetryBackoff = time.Second
	DefaultRetryFor     = 2 * time.Minute
)

// UnmarshalYAML decodes the config, keeping the decoder's strictness, and
// applies the defaults.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Config
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	c.ApplyDefaults()
	return nil
}

// ApplyDefaults fills the unset durations.
func (c *Config) ApplyDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.RetryFor == 0 {
		c.RetryFor = DefaultRetryFor
	}
}

// Validate reports every problem of the config at once. It does not read
// the token; Token does.
func (c Config) Validate() error {
	var errs []error
	if (c.TokenFile == "") == (c.TokenEnv == "") {
		errs = append(errs, errors.New("exactly one of token_file and token_env must be set"))
	}
	if strings.TrimSpace(c.Channel) == "" {
		errs = append(errs, errors.New("channel must be set"))
	}
	if c.APIURL != "" {
		u, err := url.Parse(c.APIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("api_url %q: must be an http or https URL", c.APIURL))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", c.Timeout}, {"retry_backoff", c.RetryBackoff}, {"retry_for", c.RetryFor}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// Token reads the bot token from the file or environment variable the
// config names. The error never contains the token.
func (c Config) Token() (string, error) {
	tok, err := notifier.ReadSecret("slack token", c.TokenFile, c.TokenEnv)
	return strings.TrimSpace(tok), err
}
