// Package engine is the remediator's core: it judges each alert of a
// webhook notification (dedupe, match, render the target), queues the runs
// it claims, and executes playbook steps with guards, locks, verification,
// records and notifications.
package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/playbook"
	"github.com/companion/remediator/remediator/state"
)

// ErrQueueFull means the run queue cannot take more work: the webhook
// answers 503 so that Alertmanager retries later.
var ErrQueueFull = errors.New("run queue is full")

// Reasons an alert or a run was skipped. Fixed words: they are metric
// label values.
const (
	ReasonNoPlaybook   = "no_playbook"
	ReasonInvalidAlert = "invalid_alert"
	ReasonCooldown     = "cooldown"
	ReasonBudget       = "budget"
	ReasonBreaker      = "breaker"
	ReasonLocked       = "locked"
	ReasonMaintenance  = "maintenance"
	ReasonApproval     = "needs_approval"
)

// Run results, the values of the result label.
const (
	ResultSucceeded        = "succeeded"
	ResultFailed           = "failed"
	ResultEscalated        = "escalated"
	ResultPlanned          = "planned"
	ResultSkipped          = "skipped"
	ResultAwaitingApproval = "awaiting_approval"
	ResultError            = "error"
	ResultQueued           = "queued"
	ResultRunning          = "running"
	ResultInterrupted      = "interrupted"
)

// Rules is what a reload replaces as one unit: the playbooks, the
// namespaces they may act in, and the global guards.
type Rules struct {
	Playbooks  *playbook.Set
	Namespaces map[string]bool
	// DryRun makes every action a server-side dry run.
	DryRun bool
	// Breaker pauses all automation when too many runs start at once.
	Breaker state.Budget
	// Maintenance lists windows in which no run acts.
	Maintenance []Window
}

// Options tune an Engine. Zero values get the defaults noted.
type Options struct {
	// QueueSize is how many runs may wait for a worker (default 256).
	QueueSize int
	// Workers run playbooks concurrently (default 4). With 0 workers jobs
	// wait until RunPending is called, as simulate does.
	Workers int
	// ClaimTTL is how long a claimed alert instance is remembered
	// (default 7 days).
	ClaimTTL time.Duration
	// TrackPending leaves a mark for every queued run, so that
	// RecoverInterrupted can release the claims of runs a crash lost. Only
	// worth its write with a store that survives the process and that no
	// other process shares.
	TrackPending bool
	// Query evaluates a PromQL query for verify steps that have one.
	Query func(ctx context.Context, q string) (float64, error)
	// VerifyInterval is how often verify polls (default 2s).
	VerifyInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Engine judges alerts and runs playbooks.
type Engine struct {
	logger   *slog.Logger
	store    state.Store
	exec     action.Executor
	notifier notifier.Notifier
	opts     Options
	metrics  *metrics
	rules    atomic.Pointer[Rules]
	queue    chan job
	resolved *waiters
	recent   *decisionLog

	wg      sync.WaitGroup
	started atomic.Bool
	busy    atomic.Int64
}

// New builds an Engine. Call Start to run its workers.
func New(logger *slog.Logger, store state.Store, exec action.Executor,
	n notifier.Notifier, reg prometheus.Registerer, rules *Rules, opts Options,
) *Engine {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 256
	}
	if opts.Workers < 0 {
		opts.Workers = 0
	}
	if opts.ClaimTTL <= 0 {
		opts.ClaimTTL = 7 * 24 * time.Hour
	}
	if opts.VerifyInterval <= 0 {
		opts.VerifyInterval = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{
		logger:   logger,
		store:    store,
		exec:     exec,
		notifier: n,
		opts:     opts,
		queue:    make(chan job, opts.QueueSize),
		resolved: newWaiters(),
		recent:   newDecisionLog(500),
	}
	e.metrics = newMetrics(reg, func() float64 { return float64(len(e.queue)) })
	e.metrics.queueCapacity.Set(float64(opts.QueueSize))
	e.rules.Store(rules)
	return e
}

// SetRules swaps the playbooks and namespaces atomically. Runs already
// queued keep the playbook they were claimed with.
func (e *Engine) SetRules(r *Rules) { e.rules.Store(r) }

// Rules returns the rules in force.
func (e *Engine) Rules() *Rules { return e.rules.Load() }

// Executor returns the executor runs use.
func (e *Engine) Executor() action.Executor { return e.exec }

// Decision is what the engine decided for one alert and one playbook.
type Decision struct {
	At          time.Time `json:"at"`
	Alertname   string    `json:"alertname"`
	Fingerprint string    `json:"fingerprint"`
	Status      string    `json:"status"`
	Incident    string    `json:"incident,omitempty"`
	Playbook    string    `json:"playbook,omitempty"`
	Target      string    `json:"target,omitempty"`
	Outcome     string    `json:"outcome"`
	Reason      string    `json:"reason,omitempty"`
	Detail      string    `json:"detail,omitempty"`
}

// Summary is the answer to one notification.
type Summary struct {
	Decisions       []Decision `json:"decisions"`
	TruncatedAlerts uint64     `json:"truncatedAlerts,omitempty"`
}

// Handle judges every alert of a notification, each by its own status. It
// claims and queues the runs it decides on; the work happens after it
// returns. An error wrapping state.ErrUnavailable or ErrQueueFull means
// nothing was lost and the sender should retry.
func (e *Engine) Handle(ctx context.Context, m *Message) (Summary, error) {
	e.metrics.notifications.WithLabelValues(statusLabel(m.Status)).Inc()
	sum := Summary{TruncatedAlerts: m.TruncatedAlerts, Decisions: []Decision{}}
	if m.TruncatedAlerts > 0 {
		e.metrics.truncated.Add(float64(m.TruncatedAlerts))
		e.logger.WarnContext(ctx, "alertmanager truncated the notification",
			"group_key", m.GroupKey, "truncated_alerts", m.TruncatedAlerts)
	}
	rules := e.rules.Load()
	for _, a := range m.Alerts {
		ds, err := e.handleAlert(ctx, rules, m, a)
		if err != nil {
			return sum, err
		}
		sum.Decisions = append(sum.Decisions, ds...)
	}
	return sum, nil
}

func statusLabel(s string) string {
	if s == string(model.AlertFiring) || s == string(model.AlertResolved) {
		return s
	}
	return "other"
}

func (e *Engine) handleAlert(ctx context.Context, rules *Rules, m *Message,
	a template.Alert,
) ([]Decision, error) {
	base := Decision{
		At:          e.opts.Now(),
		Alertname:   a.Labels["alertname"],
		Fingerprint: fingerprint(a),
		Status:      a.Status,
	}
	startsAt := a.StartsAt.UTC().Format(time.RFC3339Nano)
	base.Incident = incidentID(base.Fingerprint, startsAt)
	switch {
	case base.Alertname == "":
		return e.decide(ctx, base, OutcomeInvalid, ReasonInvalidAlert,
			"alert has no alertname label"), nil
	case a.Status == string(model.AlertResolved):
		return e.resolve(ctx, base, a)
	case a.Status != string(model.AlertFiring):
		return e.decide(ctx, base, OutcomeInvalid, ReasonInvalidAlert,
			fmt.Sprintf("alert status %q is neither firing nor resolved",
				truncate(a.Status, 40))), nil
	}

	pbs := rules.Playbooks.Match(a.Labels)
	if len(pbs) == 0 {
		return e.decide(ctx, base, OutcomeUnmatched, ReasonNoPlaybook, ""), nil
	}
	var out []Decision
	for _, pb := range pbs {
		d, err := e.claim(ctx, rules, m, a, base, startsAt, pb)
		if err != nil {
			return out, err
		}
		out = append(out, d...)
	}
	return out, nil
}

// claim renders the target, claims the alert instance for the playbook and
// queues the run.
func (e *Engine) claim(ctx context.Context, rules *Rules, m *Message, a template.Alert,
	base Decision, startsAt string, pb *playbook.Playbook,
) ([]Decision, error) {
	base.Playbook = pb.Name
	target, err := pb.RenderTarget(templateData(a), rules.Namespaces)
	if err != nil {
		var te *playbook.TargetError
		reason := playbook.ReasonInvalidTarget
		if errors.As(err, &te) {
			reason = te.Reason
		}
		return e.decide(ctx, base, OutcomeSkipped, reason, err.Error()), nil
	}
	base.Target = target.String()

	key := "run/" + base.Fingerprint + "/" + startsAt + "/" + pb.Name
	won, err := e.store.Claim(ctx, key, e.opts.ClaimTTL)
	if err != nil {
		return nil, fmt.Errorf("claim alert %s for playbook %s: %w", base.Fingerprint, pb.Name, err)
	}
	if !won {
		return e.decide(ctx, base, OutcomeDuplicate, "", ""), nil
	}

	j := job{
		kind:     jobRun,
		runID:    newRunID(base.Incident, pb.Name),
		incident: base.Incident,
		alert:    a,
		external: m.ExternalURL,
		playbook: pb,
		target:   target,
		claimKey: key,
	}
	// The pending mark lets a restart release the claim of a run that was
	// queued but never started, instead of losing the alert.
	if e.opts.TrackPending {
		if err := e.store.Put(ctx, bucketPending, j.runID, []byte(key)); err != nil {
			e.release(ctx, key)
			return nil, fmt.Errorf("record pending run for alert %s: %w", base.Fingerprint, err)
		}
	}
	if err := e.enqueue(j); err != nil {
		// Nothing was done: a retry of the notification may claim it again.
		e.forgetPending(ctx, j.runID)
		e.release(ctx, key)
		return nil, err
	}
	return e.decide(ctx, base, OutcomeMatched, "", ""), nil
}

// bucketPending holds the claim key of every run queued but not finished.
const bucketPending = "pending-runs"

func (e *Engine) forgetPending(ctx context.Context, runID string) {
	if !e.opts.TrackPending {
		return
	}
	if err := e.store.Delete(context.WithoutCancel(ctx), bucketPending, runID); err != nil {
		e.logger.ErrorContext(ctx, "forget pending run", "run", runID, "err", err)
	}
}

func (e *Engine) release(ctx context.Context, key string) {
	if err := e.store.Release(context.WithoutCancel(ctx), key); err != nil {
		e.logger.ErrorContext(ctx, "release claim", "claim", key, "err", err)
	}
}

func (e *Engine) enqueue(j job) error {
	e.busy.Add(1)
	select {
	case e.queue <- j:
		return nil
	default:
		e.busy.Add(-1)
		return ErrQueueFull
	}
}

// Idle reports whether no job is queued or running.
func (e *Engine) Idle() bool { return e.busy.Load() == 0 }

func (e *Engine) decide(ctx context.Context, d Decision, outcome, reason, detail string) []Decision {
	d.Outcome, d.Reason, d.Detail = outcome, reason, detail
	e.metrics.alerts.WithLabelValues(outcome, reason).Inc()
	e.recent.add(d)
	level := slog.LevelInfo
	if outcome == OutcomeDuplicate {
		level = slog.LevelDebug
	}
	if !e.logger.Enabled(ctx, level) {
		return []Decision{d}
	}
	e.logger.Log(ctx, level, "alert judged",
		"alert", d.Alertname, "fingerprint", d.Fingerprint, "status", d.Status,
		"incident", d.Incident, "playbook", d.Playbook, "target", d.Target,
		"outcome", outcome, "reason", reason, "detail", detail)
	return []Decision{d}
}

// Recent returns the latest decisions, newest first.
func (e *Engine) Recent() []Decision { return e.recent.list() }

// IncidentID names the incident of one firing alert instance: 16 hex
// digits of a 64-bit FNV-1a hash of fingerprint and startsAt.
func IncidentID(fp string, startsAt time.Time) string {
	return incidentID(fp, startsAt.UTC().Format(time.RFC3339Nano))
}

func incidentID(fp, startsAt string) string {
	h := fnv.New64a()
	h.Write([]byte(fp))
	h.Write([]byte{'|'})
	h.Write([]byte(startsAt))
	return fmt.Sprintf("%016x", h.Sum64())
}

func newRunID(incident, pb string) string {
	h := fnv.New64a()
	h.Write([]byte(incident))
	h.Write([]byte{'|'})
	h.Write([]byte(pb))
	return fmt.Sprintf("%016x", h.Sum64())
}

// fingerprint returns the alert's fingerprint, computing Alertmanager's own
// from the labels when the sender left it out.
func fingerprint(a template.Alert) string {
	if a.Fingerprint != "" {
		return truncate(a.Fingerprint, 64)
	}
	ls := make(model.LabelSet, len(a.Labels))
	for k, v := range a.Labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint().String()
}

func templateData(a template.Alert) playbook.Data {
	return playbook.Data{Labels: a.Labels, Annotations: a.Annotations}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

type decisionLog struct {
	mu   sync.Mutex
	buf  []Decision
	next int
	full bool
}

func newDecisionLog(n int) *decisionLog { return &decisionLog{buf: make([]Decision, n)} }

func (l *decisionLog) add(d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf[l.next] = d
	l.next = (l.next + 1) % len(l.buf)
	if l.next == 0 {
		l.full = true
	}
}

func (l *decisionLog) list() []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.next
	if l.full {
		n = len(l.buf)
	}
	out := make([]Decision, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, l.buf[(l.next-i+len(l.buf))%len(l.buf)])
	}
	return out
}

// Metrics returns the engine's collectors.
func (e *Engine) Metrics() Metrics { return Metrics{m: e.metrics} }
