package email

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/companion/remediator/notifier"
)

// TLS modes of Config.
const (
	// StartTLS connects in clear and requires the server to offer STARTTLS
	// before anything else is sent.
	StartTLS = "starttls"
	// ImplicitTLS speaks TLS from the first byte (port 465).
	ImplicitTLS = "tls"
	// NoTLS sends in clear. It must be chosen explicitly and cannot carry
	// credentials.
	NoTLS = "none"
)

// Config is the email integration's part of the notify configuration.
type Config struct {
	// Smarthost is the SMTP server as host:port.
	Smarthost string `yaml:"smarthost"`
	// From is the sender address, optionally with a display name.
	From string `yaml:"from"`
	// Hello is the name sent in EHLO; the machine's host name if unset.
	Hello string `yaml:"hello"`
	// Username, with PasswordFile or PasswordEnv, turns on SMTP AUTH.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// TLS is starttls (the default), tls (the default on port 465) or none.
	TLS string `yaml:"tls"`
	// CAFile holds PEM certificates trusted beside the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the server certificate must carry; the host of
	// Smarthost if unset.
	ServerName string `yaml:"server_name"`
	// Timeout bounds one delivery, connection included.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is how often one delivery is tried.
	Attempts int `yaml:"attempts"`
	// RetryBackoff is the wait after the first failed attempt; it doubles.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
}

// Defaults of Config.
const (
	DefaultTimeout      = 15 * time.Second
	DefaultAttempts     = 3
	DefaultRetryBackoff = 2 * time.Second
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

// ApplyDefaults fills unset fields: the TLS mode from the port, timeouts and
// retries.
func (c *Config) ApplyDefaults() {
	if c.TLS == "" {
		c.TLS = StartTLS
		if _, port, err := net.SplitHostPort(c.Smarthost); err == nil && port == "465" {
			c.TLS = ImplicitTLS
		}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Attempts == 0 {
		c.Attempts = DefaultAttempts
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
}

// Validate reports every problem of the config at once. It does not read
// the password; Password does.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	host, port, err := net.SplitHostPort(c.Smarthost)
	if err != nil || host == "" {
		add("smarthost %q: must be host:port", c.Smarthost)
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		add("smarthost %q: port must be 1 to 65535", c.Smarthost)
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		add("from %q: %w", c.From, err)
	}
	if strings.ContainsAny(c.Hello, " \r\n") {
		add("hello %q: must be one host name", c.Hello)
	}
	switch c.TLS {
	case StartTLS, ImplicitTLS:
	case NoTLS:
		if c.Username != "" {
			add("tls none: credentials are never sent without TLS; remove username or use starttls or tls")
		}
	default:
		add("tls %q: must be starttls, tls or none", c.TLS)
	}
	secrets := 0
	if c.PasswordFile != "" {
		secrets++
	}
	if c.PasswordEnv != "" {
		secrets++
	}
	switch {
	case c.Username != "" && secrets != 1:
		add("username set: exactly one of password_file and password_env must be set")
	case c.Username == "" && secrets != 0:
		add("password_file or password_env set without username")
	}
	if c.Timeout < 0 || c.RetryBackoff < 0 {
		add("timeout and retry_backoff must be positive")
	}
	if c.Attempts < 0 {
		add("attempts %d: must be at least 1", c.Attempts)
	}
	return errors.Join(errs...)
}

// Password reads the SMTP password from the file or environment variable
// the config names; it is empty without a username. The error never
// contains the password.
func (c Config) Password() (string, error) {
	if c.Username == "" {
		return "", nil
	}
	return notifier.ReadSecret("smtp password", c.PasswordFile, c.PasswordEnv)
}
