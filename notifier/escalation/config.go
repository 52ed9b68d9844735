package escalation

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"sort"
	"strings"
	"time"
)

// When values of a Step.
const (
	// Always sends the step as soon as its delay has passed.
	Always = "always"
	// BusinessHours holds the step until the next business hours.
	BusinessHours = "business_hours"
	// OutsideQuietHours holds the step until quiet hours end.
	OutsideQuietHours = "outside_quiet_hours"
)

// The teams of the default chains, in the order they are asked.
const (
	TeamOperations  = "operations"
	TeamEngineering = "engineering"
	TeamManager     = "manager"
)

// Config is the escalation part of the notify configuration: who may be
// told (teams), in which order and after how long (chains), which chain an
// incident follows (severities), and the hours steps may wait for.
type Config struct {
	// Timezone names the IANA zone business and quiet hours are read in.
	Timezone string `yaml:"timezone"`
	// BusinessDays are the weekdays that have business hours (mon..sun).
	BusinessDays []string `yaml:"business_days"`
	// BusinessHours is the daily window of business days.
	BusinessHours Window `yaml:"business_hours"`
	// QuietHours is the daily window in which steps that ask for it wait;
	// it may run over midnight (22:00 to 07:00).
	QuietHours Window `yaml:"quiet_hours"`
	// PollInterval is how often due steps are looked for.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Teams names groups of recipients that chain steps refer to.
	Teams map[string]Recipients `yaml:"teams"`
	// Chains are the named escalation chains.
	Chains map[string]Chain `yaml:"chains"`
	// Severities maps an alert's severity label (lower case) to a chain.
	Severities map[string]string `yaml:"severities"`
	// DefaultChain is followed when neither the playbook nor the severity
	// names a chain.
	DefaultChain string `yaml:"default_chain"`
}

// Window is a daily span of wall-clock time, "HH:MM" to "HH:MM".
type Window struct {
	Start string `yaml:"start"`
	End   string `yaml:"end"`
}

// Recipients are the people one step tells.
type Recipients struct {
	// Slack lists who is mentioned in the incident's thread: user IDs
	// (U0123, W0123), user group IDs (S0123), or "here" and "channel".
	Slack []string `yaml:"slack"`
	// Email lists addresses that receive the step by email.
	Email []string `yaml:"email"`
}

// Chain is an ordered list of steps, each sent once unless the incident is
// acknowledged or resolved first.
type Chain struct {
	Steps []Step `yaml:"steps"`
}

// Step is one stage of a chain.
type Step struct {
	// After is the delay from the incident's opening. When an earlier step
	// waited for business or quiet hours, this one waits as long on top.
	After time.Duration `yaml:"after"`
	// Notify names the teams told at this step.
	Notify []string `yaml:"notify"`
	// Slack and Email add recipients beyond the teams.
	Slack []string `yaml:"slack"`
	Email []string `yaml:"email"`
	// When is always (the default), business_hours or outside_quiet_hours.
	When string `yaml:"when"`
}

// DefaultConfig returns the chains that follow the operators' severity
// table: P0 (critical) tells every team at once; P1 escalates after an
// hour, P2 after four, P3 by the next business day. Each goes operations,
// then engineering, then manager. The teams have no recipients until
// configured, so their steps only post to the incident's Slack thread.
func DefaultConfig() Config {
	return Config{
		Timezone:      "UTC",
		BusinessDays:  []string{"mon", "tue", "wed", "thu", "fri"},
		BusinessHours: Window{Start: "09:00", End: "17:00"},
		QuietHours:    Window{Start: "22:00", End: "07:00"},
		PollInterval:  10 * time.Second,
		Teams: map[string]Recipients{
			TeamOperations: {}, TeamEngineering: {}, TeamManager: {},
		},
		Chains: map[string]Chain{
			"p0": {Steps: []Step{
				{Notify: []string{TeamOperations, TeamEngineering, TeamManager}},
			}},
			"p1": ladder(time.Hour, 2*time.Hour, Always),
			"p2": ladder(4*time.Hour, 8*time.Hour, Always),
			"p3": ladder(24*time.Hour, 72*time.Hour, BusinessHours),
		},
		Severities: map[string]string{
			"critical": "p0", "p0": "p0",
			"high": "p1", "error": "p1", "p1": "p1",
			"warning": "p2", "p2": "p2",
			"info": "p3", "low": "p3", "none": "p3", "p3": "p3",
		},
		DefaultChain: "p2",
	}
}

// ladder builds a default chain: operations at once, engineering after
// second, the manager after third.
func ladder(second, third time.Duration, when string) Chain {
	return Chain{Steps: []Step{
		{Notify: []string{TeamOperations}, When: when},
		{After: second, Notify: []string{TeamEngineering}, When: when},
		{After: third, Notify: []string{TeamManager}, When: when},
	}}
}

// UnmarshalYAML decodes the config over its defaults, keeping the decoder's
// strictness: default teams, chains and severities stay unless overridden.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Config
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	c.ApplyDefaults()
	return nil
}

// ApplyDefaults fills unset fields from DefaultConfig and adds the default
// teams, chains and severities that the config does not name. It is safe to
// call more than once.
func (c *Config) ApplyDefaults() {
	d := DefaultConfig()
	if c.Timezone == "" {
		c.Timezone = d.Timezone
	}
	if len(c.BusinessDays) == 0 {
		c.BusinessDays = d.BusinessDays
	}
	if c.BusinessHours == (Window{}) {
		c.BusinessHours = d.BusinessHours
	}
	if c.QuietHours == (Window{}) {
		c.QuietHours = d.QuietHours
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.DefaultChain == "" {
		c.DefaultChain = d.DefaultChain
	}
	c.Teams = mergeMissing(c.Teams, d.Teams)
	c.Chains = mergeMissing(c.Chains, d.Chains)
	c.Severities = mergeMissing(c.Severities, d.Severities)
	for i, ch := range c.Chains {
		for j := range ch.Steps {
			if ch.Steps[j].When == "" {
				ch.Steps[j].When = Always
			}
		}
		c.Chains[i] = ch
	}
}

func mergeMissing[V any](m, defaults map[string]V) map[string]V {
	if m == nil {
		m = make(map[string]V, len(defaults))
	}
	for k, v := range defaults {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	return m
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday,
	"sat": time.Saturday,
}

// Validate reports every problem of the config at once, each naming the
// field it is about.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil {
		add("timezone %q: %w", c.Timezone, err)
	}
	for _, d := range c.BusinessDays {
		if _, ok := weekdays[strings.ToLower(d)]; !ok {
			add("business_days: %q is not one of mon, tue, wed, thu, fri, sat, sun", d)
		}
	}
	errs = append(errs, c.BusinessHours.validate("business_hours")...)
	errs = append(errs, c.QuietHours.validate("quiet_hours")...)
	if c.PollInterval < 0 {
		add("poll_interval %s: must be positive", c.PollInterval)
	}
	for _, name := range sortedKeys(c.Teams) {
		errs = append(errs, c.Teams[name].validate("teams."+name)...)
	}
	for _, name := range sortedKeys(c.Chains) {
		errs = append(errs, c.validateChain(name, c.Chains[name])...)
	}
	for _, sev := range sortedKeys(c.Severities) {
		if sev == "" || sev != strings.ToLower(sev) {
			add("severities.%s: write severities in lower case, as they are matched lower-cased", sev)
		}
		if _, ok := c.Chains[c.Severities[sev]]; !ok {
			add("severities.%s: unknown chain %q", sev, c.Severities[sev])
		}
	}
	if _, ok := c.Chains[c.DefaultChain]; !ok {
		add("default_chain: unknown chain %q", c.DefaultChain)
	}
	return errors.Join(errs...)
}

func (c Config) validateChain(name string, ch Chain) []error {
	var errs []error
	if len(ch.Steps) == 0 {
		errs = append(errs, fmt.Errorf("chains.%s: has no steps", name))
	}
	var prev time.Duration
	for i, st := range ch.Steps {
		field := fmt.Sprintf("chains.%s.steps[%d]", name, i)
		if st.After < 0 {
			errs = append(errs, fmt.Errorf("%s.after %s: must not be negative", field, st.After))
		}
		if st.After < prev {
			errs = append(errs, fmt.Errorf("%s.after %s: comes before the step above it (%s)",
				field, st.After, prev))
		}
		prev = st.After
		for _, team := range st.Notify {
			if _, ok := c.Teams[team]; !ok {
				errs = append(errs, fmt.Errorf("%s.notify: unknown team %q", field, team))
			}
		}
		switch st.When {
		case Always, BusinessHours, OutsideQuietHours:
		default:
			errs = append(errs, fmt.Errorf(
				"%s.when %q: must be always, business_hours or outside_quiet_hours",
				field, st.When))
		}
		r := Recipients{Slack: st.Slack, Email: st.Email}
		errs = append(errs, r.validate(field)...)
	}
	return errs
}

func (r Recipients) validate(field string) []error {
	var errs []error
	for _, s := range r.Slack {
		if _, err := Mention(s); err != nil {
			errs = append(errs, fmt.Errorf("%s.slack: %w", field, err))
		}
	}
	for _, a := range r.Email {
		if _, err := mail.ParseAddress(a); err != nil {
			errs = append(errs, fmt.Errorf("%s.email %q: %w", field, a, err))
		}
	}
	return errs
}

// Mention turns a Slack recipient of the config into mention markup:
// <@U0123> for users, <!subteam^S0123> for user groups, <!here> and
// <!channel>.
func Mention(id string) (string, error) {
	switch {
	case id == "here" || id == "channel":
		return "<!" + id + ">", nil
	case !slackID(id):
		return "", fmt.Errorf("%q is not a Slack user or user group ID, \"here\" or \"channel\"", id)
	case id[0] == 'S':
		return "<!subteam^" + id + ">", nil
	default:
		return "<@" + id + ">", nil
	}
}

func slackID(id string) bool {
	if len(id) < 2 || len(id) > 32 || !strings.ContainsRune("UWS", rune(id[0])) {
		return false
	}
	for _, r := range id {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

func (w Window) validate(field string) []error {
	var errs []error
	start, err1 := clockMinutes(w.Start)
	if err1 != nil {
		errs = append(errs, fmt.Errorf("%s.start: %w", field, err1))
	}
	end, err2 := clockMinutes(w.End)
	if err2 != nil {
		errs = append(errs, fmt.Errorf("%s.end: %w", field, err2))
	}
	if err1 == nil && err2 == nil && start == end {
		errs = append(errs, fmt.Errorf("%s: start and end are both %s", field, w.Start))
	}
	return errs
}

// clockMinutes parses "HH:MM" into minutes after midnight.
func clockMinutes(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day as HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// chainFor picks the chain of an incident: the one it names if it exists,
// else the one of its severity, else the default.
func (c Config) chainFor(named, severity string) string {
	if _, ok := c.Chains[named]; ok && named != "" {
		return named
	}
	if ch, ok := c.Severities[strings.ToLower(severity)]; ok {
		return ch
	}
	return c.DefaultChain
}

// recipients resolves the teams of a step into one deduplicated list.
func (c Config) recipients(st Step) Recipients {
	r := Recipients{Slack: slices.Clone(st.Slack), Email: slices.Clone(st.Email)}
	for _, team := range st.Notify {
		r.Slack = append(r.Slack, c.Teams[team].Slack...)
		r.Email = append(r.Email, c.Teams[team].Email...)
	}
	r.Slack = dedupe(r.Slack)
	r.Email = dedupe(r.Email)
	return r
}

func dedupe(list []string) []string {
	seen := make(map[string]bool, len(list))
	out := list[:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
