package remediator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/companion/remediator/notifier/dispatch"
	"github.com/companion/remediator/remediator/kube"
	"github.com/companion/remediator/remediator/playbook"
	"github.com/companion/remediator/remediator/state"
	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is the remediator's configuration file. It is decoded strictly:
// an unknown field is an error.
type Config struct {
	// Listen is the address of the HTTP server (default 127.0.0.1:9095).
	Listen string `yaml:"listen"`
	// DataDir holds the embedded state store (default ./data).
	DataDir string `yaml:"data_dir"`
	// Playbooks are glob patterns of playbook files, relative to the
	// configuration file (default playbooks/*.yml).
	Playbooks []string `yaml:"playbooks"`
	// Namespaces is the allow-list of namespaces playbooks may act in.
	Namespaces []string `yaml:"namespaces"`
	// DryRun makes every action a server-side dry run.
	DryRun bool `yaml:"dry_run"`

	Webhook     WebhookConfig       `yaml:"webhook"`
	Queue       QueueConfig         `yaml:"queue"`
	Breaker     BreakerConfig       `yaml:"breaker"`
	Maintenance []MaintenanceWindow `yaml:"maintenance"`
	Prometheus  PrometheusConfig    `yaml:"prometheus"`
	Store       StoreConfig         `yaml:"store"`
	// Kubernetes says how to reach the cluster. When no cluster can be
	// reached the remediator runs plan-only and says so.
	Kubernetes kube.Config `yaml:"kubernetes"`
	// PlanOnly keeps the remediator from acting even when a cluster is
	// reachable.
	PlanOnly bool `yaml:"plan_only"`
	// Notify configures Slack, email and escalation chains; see
	// docs/notifications.md.
	Notify dispatch.Config `yaml:"notify"`

	// path is the file the configuration was read from.
	path string
}

// WebhookConfig protects the webhook and API endpoints.
type WebhookConfig struct {
	// MaxBodyBytes limits a request body (default 4 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// BearerTokenFile holds the token Alertmanager sends in
	// http_config.authorization. REMEDIATOR_WEBHOOK_TOKEN overrides it.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// BasicAuth is the user and password file of http_config.basic_auth.
	// REMEDIATOR_WEBHOOK_PASSWORD overrides the file.
	BasicAuth *BasicAuth `yaml:"basic_auth"`

	bearerToken string
	password    string
}

// mode names the authentication in force, for the start-up log.
func (w WebhookConfig) mode() string {
	switch {
	case w.bearerToken != "":
		return "bearer token"
	case w.BasicAuth != nil:
		return "basic auth"
	default:
		return "none: anyone who reaches the port can post alerts"
	}
}

// BasicAuth names a user and the file holding the password.
type BasicAuth struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// QueueConfig sizes the run queue.
type QueueConfig struct {
	Size    int `yaml:"size"`
	Workers int `yaml:"workers"`
}

// BreakerConfig is the global circuit breaker: more than MaxRuns runs in
// Window pauses all automation until the window slides on.
type BreakerConfig struct {
	MaxRuns int               `yaml:"max_runs"`
	Window  playbook.Duration `yaml:"window"`
}

// MaintenanceWindow stops runs in its namespaces (all when empty) between
// Start and End (RFC 3339).
type MaintenanceWindow struct {
	Name       string    `yaml:"name"`
	Start      Timestamp `yaml:"start"`
	End        Timestamp `yaml:"end"`
	Namespaces []string  `yaml:"namespaces"`
}

// StoreConfig chooses the state store: the embedded bbolt file in DataDir,
// or Redis, which several replicas share.
type StoreConfig struct {
	Redis *state.RedisConfig `yaml:"redis"`
}

// PrometheusConfig is the Prometheus server verify steps query.
type PrometheusConfig struct {
	URL string `yaml:"url"`
}

// Environment variables that carry secrets.
const (
	EnvWebhookToken    = "REMEDIATOR_WEBHOOK_TOKEN"
	EnvWebhookPassword = "REMEDIATOR_WEBHOOK_PASSWORD"
)

// ConfigError lists every problem in a configuration file.
type ConfigError struct {
	File string
	Errs []string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s:\n  %s", e.File, strings.Join(e.Errs, "\n  "))
}

var (
	yamlLine   = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	goTypeName = regexp.MustCompile(`field (\S+) not found in type [\w.]+`)
)

// LoadConfig reads, defaults and validates the configuration file. An
// empty path gives the defaults, with playbooks from ./playbooks.
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{path: path}
	var (
		root *yaml.Node
		errs []string
	)
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		root = &yaml.Node{}
		if err := yaml.Unmarshal(data, root); err != nil {
			return nil, &ConfigError{File: path, Errs: yamlMessages(err)}
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		// An empty file is io.EOF: all defaults. A TypeError leaves the
		// rest decoded, so validation still runs and every error is shown.
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, &ConfigError{File: path, Errs: yamlMessages(err)}
			}
			errs = yamlMessages(err)
		}
	}
	cfg.applyDefaults()
	errs = append(errs, cfg.validate(root)...)
	if len(errs) > 0 {
		return nil, &ConfigError{File: displayPath(path), Errs: errs}
	}
	return cfg, nil
}

func displayPath(p string) string {
	if p == "" {
		return "(defaults)"
	}
	return p
}

func yamlMessages(err error) []string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			m = "line " + sm[1] + ": " + sm[2]
		}
		msgs[i] = goTypeName.ReplaceAllString(m, "unknown field $1")
	}
	return msgs
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9095"
	}
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if len(c.Playbooks) == 0 {
		c.Playbooks = []string{"playbooks/*.yml"}
	}
	if c.Webhook.MaxBodyBytes == 0 {
		c.Webhook.MaxBodyBytes = 4 << 20
	}
	if c.Queue.Size == 0 {
		c.Queue.Size = 256
	}
	if c.Queue.Workers == 0 {
		c.Queue.Workers = 4
	}
	if c.Breaker.MaxRuns > 0 && c.Breaker.Window == 0 {
		c.Breaker.Window = playbook.Duration(10 * time.Minute)
	}
}

func (c *Config) validate(root *yaml.Node) []string {
	var errs []string
	// add puts the line of the field at path in front of the message, when
	// the file has that field.
	add := func(path string, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if line, ok := playbook.FindLine(root, strings.Split(path, ".")...); ok {
			msg = fmt.Sprintf("line %d: %s", line, msg)
		}
		errs = append(errs, msg)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen", "listen %q is not a host:port address: %v", c.Listen, err)
	}
	if u := c.Prometheus.URL; u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			add("prometheus.url", "prometheus.url %q is not an http or https URL", u)
		}
	}
	if len(c.Namespaces) == 0 {
		add("namespaces", "namespaces: the allow-list is empty, so no playbook could act; name at least one namespace")
	}
	for _, ns := range c.Namespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			add("namespaces", "namespaces: %q is not a valid namespace: %s", ns, strings.Join(msgs, "; "))
		}
	}
	if c.Webhook.MaxBodyBytes < 1024 {
		add("webhook.max_body_bytes", "webhook.max_body_bytes must be at least 1024, got %d", c.Webhook.MaxBodyBytes)
	}
	if ba := c.Webhook.BasicAuth; ba != nil && ba.Username == "" {
		add("webhook.basic_auth", "webhook.basic_auth.username is required")
	}
	if c.Webhook.BasicAuth != nil && c.Webhook.BearerTokenFile != "" {
		add("webhook", "webhook: bearer_token_file and basic_auth exclude each other")
	}
	if c.Queue.Size < 1 || c.Queue.Workers < 1 {
		add("queue", "queue: size and workers must be at least 1")
	}
	if c.Breaker.MaxRuns < 0 {
		add("breaker.max_runs", "breaker.max_runs must not be negative")
	}
	for i, w := range c.Maintenance {
		if w.Name == "" {
			add("maintenance."+strconv.Itoa(i), "maintenance[%d]: name is required", i)
		}
		if !w.End.Time.After(w.Start.Time) {
			add("maintenance."+strconv.Itoa(i), "maintenance[%d] %q: end must be after start", i, w.Name)
		}
	}
	if c.Store.Redis != nil {
		if err := c.Store.Redis.Validate(); err != nil {
			add("store.redis", "store.redis: %v", err)
		}
	}
	if err := c.Kubernetes.Validate(); err != nil {
		add("kubernetes", "kubernetes: %v", err)
	}
	c.Notify.ApplyDefaults()
	if err := c.Notify.Validate(); err != nil {
		add("notify", "%v", err)
	}
	if err := c.loadSecrets(); err != nil {
		add("webhook", "%v", err)
	}
	c.DataDir = c.resolve(c.DataDir)
	return errs
}

// loadSecrets reads the webhook credentials from the environment or files.
func (c *Config) loadSecrets() error {
	w := &c.Webhook
	w.bearerToken = strings.TrimSpace(os.Getenv(EnvWebhookToken))
	if w.bearerToken != "" && w.BasicAuth != nil {
		return fmt.Errorf("%s is set and webhook.basic_auth is configured: use one", EnvWebhookToken)
	}
	if w.bearerToken == "" && w.BearerTokenFile != "" {
		tok, err := readSecret(c.resolve(w.BearerTokenFile))
		if err != nil {
			return fmt.Errorf("webhook.bearer_token_file: %w", err)
		}
		w.bearerToken = tok
	}
	if w.BasicAuth == nil {
		return nil
	}
	w.password = os.Getenv(EnvWebhookPassword)
	if w.password == "" {
		if w.BasicAuth.PasswordFile == "" {
			return fmt.Errorf("webhook.basic_auth: set password_file or %s", EnvWebhookPassword)
		}
		pw, err := readSecret(c.resolve(w.BasicAuth.PasswordFile))
		if err != nil {
			return fmt.Errorf("webhook.basic_auth.password_file: %w", err)
		}
		w.password = pw
	}
	return nil
}

func readSecret(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

// resolve makes p relative to the configuration file's directory.
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// PlaybookPatterns returns the playbook globs resolved against the
// configuration file's directory.
func (c *Config) PlaybookPatterns() []string {
	out := make([]string, len(c.Playbooks))
	for i, p := range c.Playbooks {
		out[i] = c.resolve(p)
	}
	return out
}

// NamespaceSet returns the allow-list as a set.
func (c *Config) NamespaceSet() map[string]bool {
	m := make(map[string]bool, len(c.Namespaces))
	for _, n := range c.Namespaces {
		m[n] = true
	}
	return m
}

// Timestamp is an RFC 3339 time in the configuration; a bad one is
// reported with its line, and decoding goes on.
type Timestamp struct{ time.Time }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Timestamp) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.Parse(time.RFC3339, n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: %q is not an RFC 3339 time such as 2026-12-24T22:00:00Z", n.Line, n.Value)}}
	}
	t.Time = v
	return nil
}
