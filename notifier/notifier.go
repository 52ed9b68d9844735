// Package notifier tells people what the remediator did: on the console and
// in the log by default, in Slack and by email when configured, and along
// timed escalation chains until someone acknowledges.
package notifier

import (
	"context"
	"time"
)

// Kind names what happened to an incident.
type Kind string

// The events the remediator reports.
const (
	// Opened: a firing alert matched a playbook and a run starts.
	Opened Kind = "opened"
	// StepDone: one step finished (see Step for its result).
	StepDone Kind = "step"
	// Verified: the fix worked (the alert resolved, or the query went back
	// under its threshold).
	Verified Kind = "verified"
	// Failed: the run failed and needs a human.
	Failed Kind = "failed"
	// NeedsApproval: the playbook asks a human to approve before acting.
	NeedsApproval Kind = "needs-approval"
	// Escalate: a step asked to escalate now.
	Escalate Kind = "escalate"
	// Acknowledged: a human took the incident.
	Acknowledged Kind = "acknowledged"
	// Resolved: Alertmanager reported the alert resolved.
	Resolved Kind = "resolved"
	// Message: a free-text notify step.
	Message Kind = "message"
)

// Incident is what a notification shows of an incident.
type Incident struct {
	ID            string
	AlertName     string
	Severity      string
	Summary       string
	Labels        map[string]string
	Annotations   map[string]string
	Target        string
	Playbook      string
	Chain         string
	GeneratorURL  string
	ExternalURL   string
	OpenedAt      time.Time
	NeedsApproval bool
}

// Step is the result of one playbook step.
type Step struct {
	Name    string
	Action  string
	Result  string
	Summary string
	Error   string
}

// Event is one thing to tell people about.
type Event struct {
	Kind     Kind
	Incident Incident
	Step     *Step
	// Text is free text: a notify step's message, a failure reason, who
	// acknowledged.
	Text string
	// By is who acted, for Acknowledged.
	By string
	At time.Time
}

// Notifier delivers events. Notify must not block a remediation for long:
// slow integrations queue or time out on their own.
type Notifier interface {
	Notify(ctx context.Context, ev Event) error
}

// Store is the part of the remediator's state store that durable
// notification state (Slack threads, escalation timers) needs.
type Store interface {
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Put(ctx context.Context, bucket, key string, value []byte) error
	Get(ctx context.Context, bucket, key string) ([]byte, bool, error)
	Delete(ctx context.Context, bucket, key string) error
	List(ctx context.Context, bucket string) (map[string][]byte, error)
}
