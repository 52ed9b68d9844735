// Package dispatch composes the notification integrations: it sends each
// event of the remediator to Slack, starts and stops escalation chains, and
// delivers their steps by Slack and email. It is what `remediator serve`
// builds from the `notify:` section of its config.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/notifier/email"
	"github.com/companion/remediator/notifier/escalation"
	"github.com/companion/remediator/notifier/slack"
)

// ErrNotFound is returned by Ack for an incident with no running chain:
// unknown, already acknowledged or resolved.
var ErrNotFound = escalation.ErrNotFound

// Integration and result labels of remediator_notifier_deliveries_total.
const (
	integrationSlack = "slack"
	integrationEmail = "email"
	resultSent       = "sent"
	resultFailed     = "failed"
	resultDropped    = "dropped"
)

// closeGrace is how long Close lets queued deliveries finish.
const closeGrace = 5 * time.Second

// Dispatcher is the notifier of `remediator serve`. Notify never waits for
// Slack or email: their deliveries run in order on queues of their own.
type Dispatcher struct {
	logger *slog.Logger
	clock  notifier.Clock
	engine *escalation.Engine
	slack  *slack.Notifier
	email  *email.Sender

	slackQ *queue
	emailQ *queue

	deliveries *prometheus.CounterVec
	steps      *prometheus.CounterVec
	unacked    prometheus.Gauge
}

var _ notifier.Notifier = (*Dispatcher)(nil)

// New builds the integrations of cfg, reading their secrets, and registers
// the notifier metrics with reg. clock may be nil for the wall clock. The
// caller must Close the dispatcher and should call Run in a goroutine.
func New(
	cfg Config,
	store notifier.Store,
	logger *slog.Logger,
	reg prometheus.Registerer,
	clock notifier.Clock,
) (*Dispatcher, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notify config: %w", err)
	}
	if clock == nil {
		clock = notifier.SystemClock{}
	}
	d := &Dispatcher{logger: logger, clock: clock}
	if err := d.register(reg); err != nil {
		return nil, err
	}

	// Escalation chains always run; Slack and email only when configured.
	var err error
	d.engine, err = escalation.New(cfg.Escalation, store, clock, logger, d.steps)
	if err != nil {
		return nil, err
	}
	for name := range cfg.Escalation.Chains {
		d.steps.WithLabelValues(name, escalation.ResultSent)
		d.steps.WithLabelValues(name, escalation.ResultFailed)
	}
	if cfg.Slack != nil {
		token, err := cfg.Slack.Token()
		if err != nil {
			return nil, err
		}
		d.slack = slack.New(*cfg.Slack, token, store, logger)
	}
	if cfg.Email != nil {
		password, err := cfg.Email.Password()
		if err != nil {
			return nil, err
		}
		d.email, err = email.New(*cfg.Email, password, logger)
		if err != nil {
			return nil, err
		}
	}

	// The queues start their workers last, when nothing can fail any more.
	if d.slack != nil {
		d.slackQ = newQueue(cfg.QueueSize)
	}
	if d.email != nil {
		d.emailQ = newQueue(cfg.QueueSize)
	}
	return d, nil
}

// register creates the metrics and registers them with reg, if any.
func (d *Dispatcher) register(reg prometheus.Registerer) error {
	d.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "remediator_notifier_deliveries_total",
		Help: "Deliveries to Slack and email by result (sent, failed, dropped).",
	}, []string{"integration", "result"})
	d.steps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "remediator_notifier_escalation_steps_total",
		Help: "Escalation steps by chain and result (sent, failed, skipped, interrupted).",
	}, []string{"chain", "result"})
	d.unacked = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "remediator_notifier_unacknowledged_incidents",
		Help: "Incidents whose escalation chain runs: neither acknowledged nor resolved.",
	})
	for _, in := range []string{integrationSlack, integrationEmail} {
		for _, r := range []string{resultSent, resultFailed, resultDropped} {
			d.deliveries.WithLabelValues(in, r)
		}
	}
	if reg == nil {
		return nil
	}
	// A reload builds a new dispatcher on the same registry: it takes over
	// the collectors already registered, so the series go on.
	var errs []error
	d.deliveries = adopt(reg, d.deliveries, &errs)
	d.steps = adopt(reg, d.steps, &errs)
	d.unacked = adopt(reg, d.unacked, &errs)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("register notifier metrics: %w", err)
	}
	return nil
}

// adopt registers c, or returns the equal collector registered before.
func adopt[C prometheus.Collector](reg prometheus.Registerer, c C, errs *[]error) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old
		}
	}
	if err != nil {
		*errs = append(*errs, err)
	}
	return c
}

// Notify implements notifier.Notifier. Opened starts the incident's chain
// (the one Incident.Chain names, else the one of its severity);
// Acknowledged and Resolved stop it; Escalate makes its next step due now.
// Slack hears of every event. It returns an error only when the chain could
// not be recorded or an integration's queue is full.
func (d *Dispatcher) Notify(ctx context.Context, ev notifier.Event) error {
	var errs []error
	switch ev.Kind {
	case notifier.Opened:
		started, err := d.engine.Start(ctx, ev.Incident)
		if err != nil {
			errs = append(errs, err)
		} else if started {
			d.logger.InfoContext(ctx, "escalation_started", "incident", ev.Incident.ID,
				"alert", ev.Incident.AlertName, "severity", ev.Incident.Severity)
		}
	case notifier.Acknowledged, notifier.Resolved:
		rec, stopped, err := d.engine.Stop(ctx, ev.Incident.ID)
		if err != nil {
			errs = append(errs, err)
		} else if stopped {
			d.logStopped(ctx, ev)
			errs = append(errs, d.followUp(rec.Emailed, ev))
		}
	case notifier.Escalate:
		err := d.engine.Expedite(ctx, ev.Incident.ID)
		if err != nil && !errors.Is(err, escalation.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if d.slack != nil {
		errs = append(errs, d.enqueue(d.slackQ, integrationSlack, ev.Incident.ID, func(ctx context.Context) error {
			return d.slack.Notify(ctx, ev)
		}))
	}
	return errors.Join(errs...)
}

// Ack acknowledges an incident for by: its chain stops, and Slack and
// everyone emailed so far hear who took it. It returns ErrNotFound when no
// chain runs for the incident, and an error when the state store fails; a
// notification that cannot be queued is logged and counted, and does not
// undo the acknowledgement. The caller need not send an Acknowledged event
// as well.
func (d *Dispatcher) Ack(ctx context.Context, incidentID, by string) error {
	rec, stopped, err := d.engine.Stop(ctx, incidentID)
	if err != nil {
		return fmt.Errorf("acknowledge incident %s: %w", incidentID, err)
	}
	if !stopped {
		return fmt.Errorf("acknowledge incident %s: %w", incidentID, ErrNotFound)
	}
	ev := notifier.Event{
		Kind: notifier.Acknowledged, Incident: rec.Incident, By: by, At: d.clock.Now(),
	}
	d.logStopped(ctx, ev)
	errs := []error{d.followUp(rec.Emailed, ev)}
	if d.slack != nil {
		errs = append(errs, d.enqueue(d.slackQ, integrationSlack, ev.Incident.ID, func(ctx context.Context) error {
			return d.slack.Notify(ctx, ev)
		}))
	}
	if err := errors.Join(errs...); err != nil {
		d.logger.ErrorContext(ctx, "notification_failed", "incident", incidentID, "err", err)
	}
	return nil
}

func (d *Dispatcher) logStopped(ctx context.Context, ev notifier.Event) {
	d.logger.InfoContext(ctx, "escalation_stopped", "incident", ev.Incident.ID,
		"reason", string(ev.Kind), "by", ev.By)
}

// followUp tells by email everyone the chain emailed that the incident
// ended.
func (d *Dispatcher) followUp(to []string, ev notifier.Event) error {
	if d.email == nil || len(to) == 0 {
		return nil
	}
	return d.enqueue(d.emailQ, integrationEmail, ev.Incident.ID, func(ctx context.Context) error {
		return d.email.Send(ctx, to, ev)
	})
}

// enqueue queues one delivery about an incident and counts its result when
// it has run.
func (d *Dispatcher) enqueue(
	q *queue,
	integration, incident string,
	send func(context.Context) error,
) error {
	ok := q.push(func(ctx context.Context) {
		d.count(ctx, integration, incident, send(ctx))
	})
	if !ok {
		d.deliveries.WithLabelValues(integration, resultDropped).Inc()
		return fmt.Errorf("%s notification dropped: queue full or closed", integration)
	}
	return nil
}

// count records a delivery's result and logs a failure, once, here.
func (d *Dispatcher) count(ctx context.Context, integration, incident string, err error) {
	if err == nil {
		d.deliveries.WithLabelValues(integration, resultSent).Inc()
		return
	}
	d.deliveries.WithLabelValues(integration, resultFailed).Inc()
	d.logger.ErrorContext(ctx, "notification_failed", "integration", integration,
		"incident", incident, "err", err)
}

// Run sends escalation steps as they fall due, until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.engine.PollInterval())
	defer t.Stop()
	for {
		if err := d.Tick(ctx); err != nil && ctx.Err() == nil {
			d.logger.ErrorContext(ctx, "escalation_tick_failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick sends the escalation steps that are due now by the clock and
// updates the unacknowledged-incidents gauge. Run calls it every poll
// interval; tests call it after moving their clock.
func (d *Dispatcher) Tick(ctx context.Context) error {
	n, err := d.engine.Tick(ctx, d.page)
	if err == nil {
		d.unacked.Set(float64(n))
	}
	return err
}

// page delivers one escalation step: in the incident's Slack thread with
// mentions, and by email to the step's addresses. When Slack fails and the
// step has no addresses, the chain's addresses are emailed instead.
func (d *Dispatcher) page(ctx context.Context, p escalation.Page) escalation.Outcome {
	ev := notifier.Event{
		Kind: notifier.Escalate, Incident: p.Incident, At: d.clock.Now(),
		Text: fmt.Sprintf("Escalation step %d of %d (chain %s): %s", p.Step+1, p.Steps,
			p.Chain, teamsText(p.Teams)),
	}
	d.logger.InfoContext(ctx, "escalation_step", "incident", p.Incident.ID, "chain", p.Chain,
		"step", p.Step+1, "teams", strings.Join(p.Teams, ","))

	var errs []error
	attempted, told := false, false
	if d.slack != nil {
		attempted = true
		err := d.slack.Page(ctx, ev, mentions(p.Slack))
		d.count(ctx, integrationSlack, p.Incident.ID, err)
		if err != nil {
			errs = append(errs, err)
		}
		told = err == nil
	}
	to := p.Email
	if attempted && !told && len(to) == 0 {
		to = p.Fallback
		d.logger.WarnContext(ctx, "escalation_email_fallback", "incident", p.Incident.ID,
			"chain", p.Chain, "step", p.Step+1, "recipients", len(to))
	}
	var out escalation.Outcome
	if d.email != nil && len(to) > 0 {
		attempted = true
		err := d.email.Send(ctx, to, ev)
		d.count(ctx, integrationEmail, p.Incident.ID, err)
		if err != nil {
			errs = append(errs, err)
		} else {
			out.Emailed, told = to, true
		}
	}
	if attempted && !told {
		out.Err = errors.Join(errs...)
	}
	return out
}

func teamsText(teams []string) string {
	if len(teams) == 0 {
		return "no team named"
	}
	return strings.Join(teams, ", ")
}

// mentions turns validated Slack recipients into mention markup.
func mentions(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if m, err := escalation.Mention(id); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// Close lets queued deliveries finish for a few seconds, then abandons
// them. Notify fails after Close.
func (d *Dispatcher) Close() error {
	var wg sync.WaitGroup
	for _, q := range []*queue{d.slackQ, d.emailQ} {
		if q == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.close(closeGrace)
		}()
	}
	wg.Wait()
	return nil
}
