// Package escalation runs timed escalation chains: when an incident opens,
// its chain's steps fall due one after another until someone acknowledges
// or the alert resolves. Timers live in the shared state store, so a restart
// neither loses a pending step nor sends one twice: a step is claimed in the
// store before it is sent, and a claimed step is never sent again.
package escalation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/companion/remediator/notifier"
)

// Buckets and keys in the state store.
const (
	bucketTimers  = "notifier_escalation"
	bucketStopped = "notifier_escalation_stopped"
	claimPrefix   = "notifier/escalation/"
	// claimTTL outlives any incident, so a claimed step stays claimed.
	claimTTL = 30 * 24 * time.Hour
	// interruptedAfter is how long a step may stay "sending" before a
	// fresh engine counts it as lost to a crash.
	interruptedAfter = 5 * time.Minute
)

// Results of one escalation step, the result label of
// remediator_notifier_escalation_steps_total.
const (
	ResultSent        = "sent"
	ResultFailed      = "failed"
	ResultSkipped     = "skipped"
	ResultInterrupted = "interrupted"
	resultSending     = "sending"
)

// ErrNotFound is returned for an incident with no running chain: never
// opened, already acknowledged or resolved.
var ErrNotFound = errors.New("no running escalation for the incident")

// Record is the durable state of one incident's chain.
type Record struct {
	Incident notifier.Incident `json:"incident"`
	Chain    string            `json:"chain"`
	// Steps is the chain as it was when the incident opened, so that a
	// config reload does not shift the steps of running chains.
	Steps    []Planned `json:"steps"`
	OpenedAt time.Time `json:"opened_at"`
	// Next is the index of the first step not yet claimed.
	Next int `json:"next"`
	// ExpediteAt, when set, makes step Next due at that time.
	ExpediteAt time.Time `json:"expedite_at,omitzero"`
	Sent       []Sent    `json:"sent,omitempty"`
	// Emailed lists every address that was told by email, so they hear
	// when the incident ends.
	Emailed []string `json:"emailed,omitempty"`
}

// Planned is a step of a chain with its teams resolved.
type Planned struct {
	After      time.Duration `json:"after"`
	When       string        `json:"when"`
	Teams      []string      `json:"teams,omitempty"`
	Recipients Recipients    `json:"recipients"`
}

// Sent records the delivery of one step.
type Sent struct {
	Step   int       `json:"step"`
	At     time.Time `json:"at"`
	Result string    `json:"result"`
	Err    string    `json:"err,omitempty"`
}

// Page is one step that fell due and was claimed by this engine.
type Page struct {
	Incident notifier.Incident
	Chain    string
	// Step is the zero-based index of the step, of Steps in the chain.
	Step  int
	Steps int
	Teams []string
	Recipients
	// Fallback is every email address of the chain, for when the step's
	// own way of telling people fails.
	Fallback []string
}

// Outcome is what delivering a page achieved.
type Outcome struct {
	// Err is set when nobody could be told.
	Err error
	// Emailed lists the addresses that received the page.
	Emailed []string
}

// Deliver tells the recipients of a page.
type Deliver func(ctx context.Context, p Page) Outcome

// Engine starts, stops and advances chains. It is safe for concurrent use.
type Engine struct {
	cfg    Config
	cal    *calendar
	store  notifier.Store
	clock  notifier.Clock
	logger *slog.Logger
	steps  *prometheus.CounterVec

	mu         sync.Mutex
	swept      bool
	lastOpened int
}

// New returns an engine for a validated config. steps counts step results
// by chain and result; it may be nil.
func New(
	cfg Config,
	store notifier.Store,
	clock notifier.Clock,
	logger *slog.Logger,
	steps *prometheus.CounterVec,
) (*Engine, error) {
	cal, err := newCalendar(cfg)
	if err != nil {
		return nil, fmt.Errorf("build escalation calendar: %w", err)
	}
	if clock == nil {
		clock = notifier.SystemClock{}
	}
	return &Engine{cfg: cfg, cal: cal, store: store, clock: clock, logger: logger, steps: steps}, nil
}

// PollInterval is how often Tick should run.
func (e *Engine) PollInterval() time.Duration { return e.cfg.PollInterval }

// Start begins the chain of an incident that opened. It reports false when
// the incident already has a chain or was already stopped, so a repeated
// Opened event starts nothing.
func (e *Engine) Start(ctx context.Context, inc notifier.Incident) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok, err := e.load(ctx, inc.ID); err != nil || ok {
		return false, err
	}
	if _, ok, err := e.store.Get(ctx, bucketStopped, inc.ID); err != nil || ok {
		if err != nil {
			return false, fmt.Errorf("read escalation of incident %s: %w", inc.ID, err)
		}
		return false, nil
	}
	chain := e.cfg.chainFor(inc.Chain, inc.Severity)
	if inc.Chain != "" && chain != inc.Chain {
		e.logger.WarnContext(ctx, "escalation_chain_unknown", "incident", inc.ID,
			"chain", inc.Chain, "used", chain)
	}
	rec := Record{Incident: inc, Chain: chain, OpenedAt: inc.OpenedAt}
	if rec.OpenedAt.IsZero() {
		rec.OpenedAt = e.clock.Now()
	}
	for _, st := range e.cfg.Chains[chain].Steps {
		rec.Steps = append(rec.Steps, Planned{
			After: st.After, When: st.When, Teams: st.Notify,
			Recipients: e.cfg.recipients(st),
		})
	}
	if err := e.save(ctx, rec); err != nil {
		return false, err
	}
	return true, nil
}

// Stop ends the chain of an incident and returns its record. It reports
// false when no chain was running.
func (e *Engine) Stop(ctx context.Context, id string) (Record, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok, err := e.load(ctx, id)
	if err != nil || !ok {
		return rec, false, err
	}
	stamp, _ := e.clock.Now().MarshalText()
	if err := e.store.Put(ctx, bucketStopped, id, stamp); err != nil {
		return rec, false, fmt.Errorf("stop escalation of incident %s: %w", id, err)
	}
	if err := e.store.Delete(ctx, bucketTimers, id); err != nil {
		return rec, false, fmt.Errorf("stop escalation of incident %s: %w", id, err)
	}
	return rec, true, nil
}

// Expedite makes the next step of an incident's chain due now.
func (e *Engine) Expedite(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok, err := e.load(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("expedite incident %s: %w", id, ErrNotFound)
	}
	rec.ExpediteAt = e.clock.Now()
	return e.save(ctx, rec)
}

// Get returns the record of an incident's running chain.
func (e *Engine) Get(ctx context.Context, id string) (Record, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.load(ctx, id)
}

// Open returns the number of incidents whose chain runs: neither
// acknowledged nor resolved. It is the count of the last Tick.
func (e *Engine) Open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastOpened
}

// Due returns when step i of rec falls due: its delay after the step
// before it, moved to when its When rule allows. A step held for business
// or quiet hours thus holds the steps after it too, so P3's "next business
// day" counts business days.
func (e *Engine) Due(rec Record, i int) time.Time {
	due, after := rec.OpenedAt, time.Duration(0)
	for j := 0; j <= i; j++ {
		st := rec.Steps[j]
		due = e.cal.hold(due.Add(st.After-after), st.When)
		after = st.After
	}
	if i == rec.Next && !rec.ExpediteAt.IsZero() && rec.ExpediteAt.Before(due) {
		due = rec.ExpediteAt
	}
	return due
}

// Tick sends every step that is due: it claims the step in the store, then
// calls deliver, then records the outcome. A step whose claim another
// replica or an earlier run holds is skipped. Tick returns the number of
// running chains.
func (e *Engine) Tick(ctx context.Context, deliver Deliver) (int, error) {
	all, err := e.store.List(ctx, bucketTimers)
	if err != nil {
		return 0, fmt.Errorf("list escalations: %w", err)
	}
	ids := make([]string, 0, len(all))
	for id := range all {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	e.sweepInterrupted(ctx, ids)

	var errs []error
	for _, id := range ids {
		if err := e.advance(ctx, id, deliver); err != nil {
			errs = append(errs, err)
		}
	}
	n, err := e.count(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// advance sends the due steps of one incident, in order.
func (e *Engine) advance(ctx context.Context, id string, deliver Deliver) error {
	for ctx.Err() == nil {
		page, won, ok, err := e.claimNext(ctx, id)
		if err != nil || !ok {
			return err
		}
		if !won {
			e.count1(page.Chain, ResultSkipped)
			e.logger.InfoContext(ctx, "escalation_step_skipped", "incident", id,
				"chain", page.Chain, "step", page.Step+1, "reason", "claimed elsewhere")
			continue
		}
		out := deliver(ctx, page)
		result := ResultSent
		if out.Err != nil {
			result = ResultFailed
		}
		e.count1(page.Chain, result)
		if err := e.finish(ctx, id, page.Step, result, out); err != nil {
			return err
		}
	}
	return nil
}

// claimNext claims the next step of an incident if it is due. ok is false
// when nothing is due; won is false when the step was claimed before.
func (e *Engine) claimNext(ctx context.Context, id string) (Page, bool, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok, err := e.load(ctx, id)
	if err != nil || !ok || rec.Next >= len(rec.Steps) {
		return Page{}, false, false, err
	}
	now := e.clock.Now()
	if e.Due(rec, rec.Next).After(now) {
		return Page{}, false, false, nil
	}
	if stopped, err := e.stopped(ctx, id); err != nil || stopped {
		return Page{}, false, false, err
	}
	i := rec.Next
	won, err := e.store.Claim(ctx, fmt.Sprintf("%s%s/%d", claimPrefix, id, i), claimTTL)
	if err != nil {
		return Page{}, false, false, fmt.Errorf("claim escalation step %d of incident %s: %w",
			i+1, id, err)
	}
	rec.Next++
	rec.ExpediteAt = time.Time{}
	if won {
		rec.Sent = append(rec.Sent, Sent{Step: i, At: now, Result: resultSending})
	}
	if err := e.save(ctx, rec); err != nil {
		return Page{}, false, false, err
	}
	st := rec.Steps[i]
	page := Page{
		Incident: rec.Incident, Chain: rec.Chain, Step: i, Steps: len(rec.Steps),
		Teams: st.Teams, Recipients: st.Recipients, Fallback: rec.allEmail(),
	}
	return page, won, true, nil
}

// finish records the outcome of a step, unless the chain stopped meanwhile.
func (e *Engine) finish(
	ctx context.Context,
	id string,
	step int,
	result string,
	out Outcome,
) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok, err := e.load(ctx, id)
	if err != nil || !ok {
		return err
	}
	for i := range rec.Sent {
		if rec.Sent[i].Step == step {
			rec.Sent[i].Result = result
			if out.Err != nil {
				rec.Sent[i].Err = out.Err.Error()
			}
		}
	}
	for _, a := range out.Emailed {
		if !slices.Contains(rec.Emailed, a) {
			rec.Emailed = append(rec.Emailed, a)
		}
	}
	return e.save(ctx, rec)
}

// sweepInterrupted marks, once per engine, the steps that an earlier
// process claimed but never finished: they were lost in a crash and are not
// sent again.
func (e *Engine) sweepInterrupted(ctx context.Context, ids []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.swept {
		return
	}
	e.swept = true
	now := e.clock.Now()
	for _, id := range ids {
		rec, ok, err := e.load(ctx, id)
		if err != nil || !ok {
			continue
		}
		changed := false
		for i, s := range rec.Sent {
			if s.Result == resultSending && now.Sub(s.At) >= interruptedAfter {
				rec.Sent[i].Result = ResultInterrupted
				changed = true
				e.count1(rec.Chain, ResultInterrupted)
				e.logger.WarnContext(ctx, "escalation_step_interrupted", "incident", id,
					"chain", rec.Chain, "step", s.Step+1, "claimed_at", s.At)
			}
		}
		if changed {
			if err := e.save(ctx, rec); err != nil {
				e.logger.ErrorContext(ctx, "escalation_record_failed", "incident", id, "err", err)
			}
		}
	}
}

// count counts the running chains and drops the stop marks that are older
// than any claim.
func (e *Engine) count(ctx context.Context) (int, error) {
	all, err := e.store.List(ctx, bucketTimers)
	if err != nil {
		return 0, fmt.Errorf("list escalations: %w", err)
	}
	stopped, err := e.store.List(ctx, bucketStopped)
	if err != nil {
		return 0, fmt.Errorf("list stopped escalations: %w", err)
	}
	now := e.clock.Now()
	for id, v := range stopped {
		var at time.Time
		if at.UnmarshalText(v) == nil && now.Sub(at) > claimTTL {
			_ = e.store.Delete(ctx, bucketStopped, id)
		}
	}
	e.mu.Lock()
	e.lastOpened = len(all)
	e.mu.Unlock()
	return len(all), nil
}

func (e *Engine) count1(chain, result string) {
	if e.steps != nil {
		e.steps.WithLabelValues(chain, result).Inc()
	}
}

func (e *Engine) stopped(ctx context.Context, id string) (bool, error) {
	_, ok, err := e.store.Get(ctx, bucketStopped, id)
	if err != nil {
		return false, fmt.Errorf("read escalation of incident %s: %w", id, err)
	}
	return ok, nil
}

func (e *Engine) load(ctx context.Context, id string) (Record, bool, error) {
	b, ok, err := e.store.Get(ctx, bucketTimers, id)
	if err != nil {
		return Record{}, false, fmt.Errorf("read escalation of incident %s: %w", id, err)
	}
	if !ok {
		return Record{}, false, nil
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, false, fmt.Errorf("decode escalation of incident %s: %w", id, err)
	}
	return rec, true, nil
}

func (e *Engine) save(ctx context.Context, rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode escalation of incident %s: %w", rec.Incident.ID, err)
	}
	if err := e.store.Put(ctx, bucketTimers, rec.Incident.ID, b); err != nil {
		return fmt.Errorf("save escalation of incident %s: %w", rec.Incident.ID, err)
	}
	return nil
}

// allEmail is every address of the chain, in order of the steps.
func (r Record) allEmail() []string {
	var all []string
	for _, st := range r.Steps {
		all = append(all, st.Recipients.Email...)
	}
	return dedupe(all)
}
