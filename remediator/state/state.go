// Package state keeps what the remediator must not forget: dedupe claims,
// cooldowns and run budgets per target, locks, and incidents. A Store is
// shared by every replica; the embedded bbolt store serves one machine and
// survives restarts, the memory store serves tests.
package state

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps every failure to reach or write the backing store.
// Callers answer 503 so that Alertmanager retries.
var ErrUnavailable = errors.New("state store unavailable")

// Budget limits how often one target may be acted on. Every run admitted
// on a target counts against every budget later checked for it, whichever
// budget admitted it; runs are remembered for RunHistory, or longer when
// Cooldown or Window is longer.
type Budget struct {
	// Cooldown is the least time between two runs on the target.
	Cooldown time.Duration
	// MaxRuns is the most runs in Window; zero means no limit. A run
	// exactly Window old has left the window.
	MaxRuns int
	// Window must be set when MaxRuns is.
	Window time.Duration
}

// Admission is the answer of Admit.
type Admission struct {
	Allowed bool
	// Reason says why a run was refused: ReasonCooldown ("cooldown") or
	// ReasonBudget ("budget").
	Reason string
	// Until is when the refusal ends, in UTC, if known.
	Until time.Time
}

// Store is the shared state of the remediator. Every method is safe for
// concurrent use by many goroutines and, for shared backends, many replicas.
type Store interface {
	// Claim records key if nobody has; it reports whether this caller won.
	// The claim expires after ttl.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Release drops a claim, so that a later delivery may win it again.
	Release(ctx context.Context, key string) error

	// Admit checks the cooldown and budget of target at now and, when both
	// allow it, records a run, all in one atomic step.
	Admit(ctx context.Context, target string, now time.Time, b Budget) (Admission, error)

	// Lock takes an exclusive lock on key for owner until ttl passes or
	// Unlock is called. It reports whether owner holds the lock.
	Lock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// Unlock releases key if owner holds it.
	Unlock(ctx context.Context, key, owner string) error

	// SaveIncident creates or replaces an incident.
	SaveIncident(ctx context.Context, inc Incident) error
	// Incident returns the incident with id.
	Incident(ctx context.Context, id string) (Incident, bool, error)
	// Incidents lists incidents, newest first; openOnly drops closed ones.
	Incidents(ctx context.Context, openOnly bool) ([]Incident, error)

	// Put, Get, Delete and List are a small key-value space for other
	// subsystems (escalation timers, known-good revisions), one bucket each.
	Put(ctx context.Context, bucket, key string, value []byte) error
	Get(ctx context.Context, bucket, key string) ([]byte, bool, error)
	Delete(ctx context.Context, bucket, key string) error
	List(ctx context.Context, bucket string) (map[string][]byte, error)

	// Ping reports whether the store can serve.
	Ping(ctx context.Context) error
	Close() error
}

// Incident status values.
const (
	StatusOpen         = "open"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
)

// Incident is one firing alert instance (fingerprint and startsAt) and what
// was done about it.
type Incident struct {
	ID           string            `json:"id"`
	Fingerprint  string            `json:"fingerprint"`
	AlertName    string            `json:"alertname"`
	Severity     string            `json:"severity,omitempty"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	ExternalURL  string            `json:"externalURL,omitempty"`

	Status   string    `json:"status"`
	OpenedAt time.Time `json:"openedAt"`
	ClosedAt time.Time `json:"closedAt,omitempty"`
	AckedBy  string    `json:"ackedBy,omitempty"`
	AckedAt  time.Time `json:"ackedAt,omitempty"`

	Runs []Run `json:"runs,omitempty"`
}

// Open reports whether the incident is neither resolved nor closed.
func (i Incident) Open() bool { return i.Status != StatusResolved }

// Run is one playbook run within an incident.
type Run struct {
	ID       string    `json:"id"`
	Playbook string    `json:"playbook"`
	Target   string    `json:"target"`
	Executor string    `json:"executor"`
	Result   string    `json:"result"`
	Reason   string    `json:"reason,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitempty"`
	Steps    []Step    `json:"steps,omitempty"`
}

// Step is the record of one executed playbook step.
type Step struct {
	Name     string            `json:"name"`
	Action   string            `json:"action"`
	Result   string            `json:"result"`
	Summary  string            `json:"summary,omitempty"`
	Error    string            `json:"error,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	Started  time.Time         `json:"started"`
	Duration time.Duration     `json:"duration"`
}
