package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/alertmanager/template"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/playbook"
	"github.com/companion/remediator/remediator/state"
)

type jobKind int

const (
	jobRun jobKind = iota
	jobResolved
)

type job struct {
	kind     jobKind
	runID    string
	incident string
	events   *eventQueue
	alert    template.Alert
	external string
	playbook *playbook.Playbook
	target   action.Target
	claimKey string
}

// Start runs the workers until ctx ends; Wait waits for them.
func (e *Engine) Start(ctx context.Context) {
	if !e.started.CompareAndSwap(false, true) {
		return
	}
	for range e.opts.Workers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-e.queue:
					e.do(ctx, j)
				}
			}
		}()
	}
}

// Wait blocks until every worker started by Start has returned.
func (e *Engine) Wait() { e.wg.Wait() }

// RunPending runs every queued job in the calling goroutine and returns
// when the queue is empty. Simulate uses it with zero workers.
func (e *Engine) RunPending(ctx context.Context) {
	for {
		select {
		case j := <-e.queue:
			e.do(ctx, j)
		default:
			return
		}
	}
}

func (e *Engine) do(ctx context.Context, j job) {
	defer e.busy.Add(-1)
	switch j.kind {
	case jobResolved:
		e.notify(ctx, notifier.Event{Kind: notifier.Resolved,
			Incident: e.eventIncident(j), At: e.opts.Now()})
	case jobRun:
		e.metrics.inflight.Inc()
		defer e.metrics.inflight.Dec()
		defer e.forgetPending(ctx, j.runID)
		e.run(ctx, j)
	}
}

// run executes one playbook run from guards to its last step. Store writes
// on the way to the first action are kept to the few that safety needs
// (budget, lock, the run marked running), and notifications go out on the
// run's own ordered queue, so that neither delays the action.
func (e *Engine) run(ctx context.Context, j job) {
	rec := state.Run{
		ID:       j.runID,
		Playbook: j.playbook.Name,
		Target:   j.target.String(),
		Executor: e.exec.Name(),
		Started:  e.opts.Now(),
	}
	log := e.logger.With("incident", j.incident, "run", j.runID,
		"playbook", j.playbook.Name, "target", rec.Target)
	j.events = e.startEvents(ctx)
	defer j.events.close()

	if e.resolvedEarly(ctx, j) {
		log.InfoContext(ctx, "run skipped: the alert resolved before the run started")
		rec.Result, rec.Reason = ResultSkipped, "the alert resolved before the run started"
		e.finishRun(ctx, j, rec)
		return
	}
	if err := e.resolveTarget(ctx, &j); err != nil {
		log.WarnContext(ctx, "target could not be resolved", "err", err)
		rec.Result, rec.Reason = ResultFailed, err.Error()
		e.emit(j, notifier.Failed, err.Error(), nil)
		e.finishRun(ctx, j, rec)
		return
	}
	rec.Target = j.target.String()

	reason, detail, err := e.admit(ctx, j)
	if err != nil {
		// Nothing was done: let a repeat of the alert claim it again.
		log.ErrorContext(ctx, "guards could not be checked", "err", err)
		e.release(ctx, j.claimKey)
		rec.Result, rec.Reason = ResultError, err.Error()
		e.finishRun(ctx, j, rec)
		return
	}
	if reason != "" {
		log.InfoContext(ctx, "run skipped by guard", "reason", reason, "detail", detail)
		e.metrics.skipped.WithLabelValues(reason).Inc()
		rec.Result, rec.Reason = ResultSkipped, reason+": "+detail
		// Nobody acted on a firing alert: open the incident for people, so
		// its escalation chain finds someone.
		e.emit(j, notifier.Opened, "", nil)
		if reason == ReasonApproval {
			rec.Result = ResultAwaitingApproval
			e.emit(j, notifier.NeedsApproval, detail, nil)
		} else {
			// People should know automation stood back from a firing alert.
			e.emit(j, notifier.Message, "no automatic action: "+detail, nil)
		}
		e.finishRun(ctx, j, rec)
		return
	}

	lockKey := "target/" + j.target.Key()
	ok, err := e.store.Lock(ctx, lockKey, j.runID, runTTL(j.playbook))
	if err != nil || !ok {
		rec.Result, rec.Reason = ResultSkipped, ReasonLocked+": another run is acting on the target"
		if err != nil {
			// Nothing was done: let a repeat of the alert claim it again.
			e.release(ctx, j.claimKey)
			rec.Result, rec.Reason = ResultError, err.Error()
		}
		log.InfoContext(ctx, "run skipped", "reason", rec.Reason)
		e.finishRun(ctx, j, rec)
		return
	}
	defer func() {
		if err := e.store.Unlock(context.WithoutCancel(ctx), lockKey, j.runID); err != nil {
			log.ErrorContext(ctx, "unlock target", "err", err)
		}
	}()

	// Marked running before acting, so that a crash leaves a visible
	// interrupted run rather than nothing.
	rec.Result = ResultRunning
	if err := e.saveRun(ctx, j, rec); err != nil {
		log.ErrorContext(ctx, "record run start, not acting", "err", err)
		e.release(ctx, j.claimKey)
		e.metrics.runs.WithLabelValues(j.playbook.Name, ResultError).Inc()
		return
	}
	log.InfoContext(ctx, "run started", "executor", e.exec.Name(), "steps", len(j.playbook.Steps))
	e.emit(j, notifier.Opened, "", nil)

	rec.Result = e.steps(ctx, j, &rec)
	e.finishRun(ctx, j, rec)
}

// runTTL is how long the target lock lives: every step's timeout and a
// margin, so a crashed replica's lock expires by itself.
func runTTL(pb *playbook.Playbook) time.Duration {
	ttl := time.Minute
	for _, s := range pb.Steps {
		ttl += time.Duration(s.Timeout)
	}
	return ttl
}

// admit applies the guards in order: maintenance, approval, the target's
// cooldown and budget, then the global circuit breaker. It returns a
// reason when the run must not act.
func (e *Engine) admit(ctx context.Context, j job) (reason, detail string, err error) {
	now := e.opts.Now()
	rules := e.rules.Load()
	for _, w := range rules.Maintenance {
		if w.Covers(now, j.target.Namespace) {
			return ReasonMaintenance, "maintenance window " + w.Name, nil
		}
	}
	g := j.playbook.Guards
	if g.NeedsApproval {
		return ReasonApproval, "the playbook needs a human to approve the run", nil
	}
	adm, err := e.store.Admit(ctx, "target/"+j.target.Key(), now, state.Budget{
		Cooldown: time.Duration(g.Cooldown),
		MaxRuns:  g.MaxRuns,
		Window:   time.Duration(g.Window),
	})
	if err != nil {
		return "", "", fmt.Errorf("check cooldown of %s: %w", j.target, err)
	}
	if !adm.Allowed {
		return adm.Reason, fmt.Sprintf("%s on %s until %s", adm.Reason, j.target,
			adm.Until.UTC().Format(time.RFC3339)), nil
	}
	if b := rules.Breaker; b.MaxRuns > 0 {
		adm, err := e.store.Admit(ctx, "breaker", now, b)
		if err != nil {
			return "", "", fmt.Errorf("check circuit breaker: %w", err)
		}
		if !adm.Allowed {
			return ReasonBreaker, fmt.Sprintf(
				"more than %d runs in %s: automation paused until %s",
				b.MaxRuns, b.Window,
				adm.Until.UTC().Format(time.RFC3339)), nil
		}
	}
	return "", "", nil
}

// steps runs the playbook's steps in order and returns the run's result.
func (e *Engine) steps(ctx context.Context, j job, rec *state.Run) string {
	planOnly := e.planOnly()
	for i := range j.playbook.Steps {
		s := &j.playbook.Steps[i]
		sr, err := e.step(ctx, j, s, planOnly)
		rec.Steps = append(rec.Steps, sr)
		e.metrics.stepDuration.WithLabelValues(s.Action).Observe(sr.Duration.Seconds())
		e.emit(j, notifier.StepDone, "", &notifier.Step{Name: sr.Name, Action: sr.Action,
			Result: sr.Result, Summary: sr.Summary, Error: sr.Error})
		if err := e.saveRun(ctx, j, *rec); err != nil {
			e.logger.ErrorContext(ctx, "record step", "incident", j.incident,
				"step", s.Name, "err", err)
		}

		if err == nil {
			if s.Action == playbook.ActionVerify && !planOnly {
				e.markGood(ctx, j)
			}
			if s.Action == playbook.ActionVerify && !planOnly &&
				s.OnSuccess == playbook.OnSuccessStop {
				e.emit(j, notifier.Verified, sr.Summary, nil)
				return ResultSucceeded
			}
			continue
		}
		switch s.OnFailure {
		case playbook.OnFailureContinue:
			continue
		case playbook.OnFailureEscalate:
			e.emit(j, notifier.Escalate, fmt.Sprintf("step %s failed: %s", s.Name, sr.Error), nil)
			return ResultEscalated
		default:
			e.emit(j, notifier.Failed, fmt.Sprintf("step %s failed: %s", s.Name, sr.Error), nil)
			return ResultFailed
		}
	}
	if planOnly {
		return ResultPlanned
	}
	return ResultSucceeded
}

// resolveTarget replaces a pod target by the workload that owns it, when
// the executor can tell, so that cooldowns, budgets and the lock belong to
// the workload: a restarted workload's new pods have new names.
func (e *Engine) resolveTarget(ctx context.Context, j *job) error {
	r, ok := e.exec.(action.Resolver)
	if !ok || j.target.Pod == "" || j.target.Kind != "" {
		return nil
	}
	t, err := r.Resolve(ctx, j.target)
	if err != nil {
		return fmt.Errorf("find the workload of pod %s/%s: %w", j.target.Namespace, j.target.Pod, err)
	}
	j.target = t
	return nil
}

// markGood tells the executor the workload's revision is healthy, so a
// later rollback can go back to it.
func (e *Engine) markGood(ctx context.Context, j job) {
	m, ok := e.exec.(action.GoodMarker)
	if !ok {
		return
	}
	rev, err := m.MarkGood(ctx, j.target)
	if err != nil {
		e.logger.WarnContext(ctx, "remember good revision", "target", j.target.String(), "err", err)
		return
	}
	e.logger.InfoContext(ctx, "revision verified good", "target", j.target.String(), "revision", rev)
}

func (e *Engine) planOnly() bool {
	_, ok := e.exec.(*action.PlanOnly)
	return ok
}

// step runs one step within its timeout.
func (e *Engine) step(ctx context.Context, j job, s *playbook.Step, planOnly bool,
) (state.Step, error) {
	start := e.opts.Now()
	sr := state.Step{Name: s.Name, Action: s.Action, Started: start}
	sctx, cancel := context.WithTimeout(ctx, time.Duration(s.Timeout))
	defer cancel()

	var (
		res action.Result
		err error
	)
	switch s.Action {
	case playbook.ActionVerify:
		res, err = e.verify(sctx, j, s, planOnly)
	case playbook.ActionNotify, playbook.ActionEscalate:
		res, err = e.message(sctx, j, s)
	default:
		res, err = e.exec.Execute(sctx, action.Request{
			Action: action.Type(s.Action),
			Target: j.target,
			Params: s.Params(),
			DryRun: e.rules.Load().DryRun || j.playbook.Guards.DryRun || s.DryRun,
			RunID:  j.runID,
		})
	}
	sr.Duration = time.Since(start)
	sr.Summary, sr.Details = res.Summary, res.Details
	switch {
	case err != nil:
		sr.Result, sr.Error = ResultFailed, err.Error()
	case res.Planned:
		sr.Result = ResultPlanned
	case res.DryRun:
		sr.Result = "dry_run"
	default:
		sr.Result = ResultSucceeded
	}
	e.logger.InfoContext(ctx, "step finished", "incident", j.incident, "run", j.runID,
		"playbook", j.playbook.Name, "step", s.Name, "action", s.Action,
		"target", j.target.String(), "result", sr.Result, "summary", sr.Summary,
		"terminal", action.IsTerminal(err), "err", sr.Error)
	return sr, err
}

// message sends a notify or escalate step.
func (e *Engine) message(ctx context.Context, j job, s *playbook.Step) (action.Result, error) {
	text, err := s.RenderMessage(templateData(j.alert))
	if err != nil {
		return action.Result{}, action.Terminal(err)
	}
	kind := notifier.Message
	if s.Action == playbook.ActionEscalate {
		kind = notifier.Escalate
	}
	err = j.events.sendWait(ctx, notifier.Event{Kind: kind, Incident: e.eventIncident(j),
		Text: text, At: e.opts.Now()})
	if err != nil {
		return action.Result{}, fmt.Errorf("%s: %w", s.Action, err)
	}
	return action.Result{Summary: "sent: " + truncate(text, 200)}, nil
}

// verify waits until the alert resolves or, with a query, the query's value
// is at or under the threshold, before the step's deadline.
func (e *Engine) verify(ctx context.Context, j job, s *playbook.Step, planOnly bool,
) (action.Result, error) {
	what := "alert resolves"
	if s.Query != "" {
		what = fmt.Sprintf("%s <= %g", s.Query, *s.Below)
	}
	if planOnly {
		return action.Result{Planned: true,
			Summary: fmt.Sprintf("would wait up to %s until %s", s.Timeout, what)}, nil
	}
	if s.Query != "" && e.opts.Query == nil {
		return action.Result{}, action.Terminal(errors.New(
			"verify with a query needs prometheus.url in the configuration"))
	}
	resolved := e.resolved.wait(j.incident)
	defer e.resolved.done(j.incident, resolved)
	tick := time.NewTicker(e.opts.VerifyInterval)
	defer tick.Stop()
	for {
		ok, val, err := e.checkVerified(ctx, j, s)
		if err != nil {
			e.logger.WarnContext(ctx, "verify check failed", "incident", j.incident, "err", err)
		}
		if ok {
			if s.Query != "" {
				return action.Result{Summary: fmt.Sprintf("verified: %s (value %g)", what, val)}, nil
			}
			return action.Result{Summary: "verified: the alert resolved"}, nil
		}
		select {
		case <-ctx.Done():
			return action.Result{}, fmt.Errorf("verify: not verified within %s: %s",
				s.Timeout, what)
		case <-resolved:
		case <-tick.C:
		}
	}
}

func (e *Engine) checkVerified(ctx context.Context, j job, s *playbook.Step,
) (bool, float64, error) {
	if s.Query != "" {
		v, err := e.opts.Query(ctx, s.Query)
		if err != nil {
			return false, 0, err
		}
		return v <= *s.Below, v, nil
	}
	inc, found, err := e.store.Incident(ctx, j.incident)
	if err != nil || !found {
		return false, 0, err
	}
	return inc.Status == state.StatusResolved, 0, nil
}

// finishRun records the run's end, counts it and logs it.
func (e *Engine) finishRun(ctx context.Context, j job, rec state.Run) {
	rec.Finished = e.opts.Now()
	ctx = context.WithoutCancel(ctx)
	if err := e.saveRun(ctx, j, rec); err != nil {
		e.logger.ErrorContext(ctx, "record run", "incident", j.incident, "err", err)
	}
	e.metrics.runs.WithLabelValues(j.playbook.Name, rec.Result).Inc()
	e.logger.InfoContext(ctx, "run finished", "incident", j.incident, "run", j.runID,
		"playbook", j.playbook.Name, "target", rec.Target, "result", rec.Result,
		"reason", rec.Reason, "steps", len(rec.Steps))
}

// resolve closes the alert's incident and wakes verify steps waiting on it.
// A resolved alert never starts a run.
func (e *Engine) resolve(ctx context.Context, base Decision, a template.Alert,
) ([]Decision, error) {
	now := e.opts.Now()
	closed := false
	found, err := e.updateIncident(ctx, base.Incident, nil, func(inc *state.Incident) {
		if inc.Status == state.StatusResolved {
			return
		}
		closed = true
		inc.Status = state.StatusResolved
		inc.ClosedAt = now
	})
	if err != nil {
		return nil, fmt.Errorf("close incident %s: %w", base.Incident, err)
	}
	if !found {
		if len(e.rules.Load().Playbooks.Match(a.Labels)) == 0 {
			return e.decide(ctx, base, OutcomeResolved, "", "no incident was open"), nil
		}
		// A run may be queued whose worker has not opened the incident
		// yet: leave a mark that it finds.
		if err := e.store.Put(ctx, bucketResolvedEarly, base.Incident,
			[]byte(now.UTC().Format(time.RFC3339Nano))); err != nil {
			return nil, fmt.Errorf("record resolution of %s: %w", base.Incident, err)
		}
		return e.decide(ctx, base, OutcomeResolved, "", "no incident was open"), nil
	}
	e.resolved.signal(base.Incident)
	if closed {
		// The notification is best effort: the incident is already closed.
		_ = e.enqueue(job{kind: jobResolved, incident: base.Incident, alert: a})
	}
	return e.decide(ctx, base, OutcomeResolved, "", "incident closed"), nil
}

// bucketResolvedEarly marks alerts that resolved before their incident was
// opened. Marks are kept, because every playbook of the alert reads them;
// they are rare (a run still queued when its alert resolves) and small.
const bucketResolvedEarly = "resolved-early"

// resolvedEarly reports whether the alert resolved before this run opened
// its incident, and if so closes the incident.
func (e *Engine) resolvedEarly(ctx context.Context, j job) bool {
	_, found, err := e.store.Get(ctx, bucketResolvedEarly, j.incident)
	if err != nil || !found {
		return false
	}
	now := e.opts.Now()
	_, err = e.updateIncident(ctx, j.incident,
		func() state.Incident { return newIncident(j.incident, j.external, j.alert, now) },
		func(inc *state.Incident) { inc.Status, inc.ClosedAt = state.StatusResolved, now })
	if err != nil {
		e.logger.ErrorContext(ctx, "close incident", "incident", j.incident, "err", err)
	}
	return true
}

func (e *Engine) notify(ctx context.Context, ev notifier.Event) {
	if err := e.notifier.Notify(ctx, ev); err != nil {
		e.logger.WarnContext(ctx, "notification failed", "incident", ev.Incident.ID,
			"event", string(ev.Kind), "err", err)
	}
}

func (e *Engine) eventIncident(j job) notifier.Incident {
	inc := notifier.Incident{
		ID:           j.incident,
		AlertName:    j.alert.Labels["alertname"],
		Severity:     j.alert.Labels["severity"],
		Summary:      j.alert.Annotations["summary"],
		Labels:       j.alert.Labels,
		Annotations:  j.alert.Annotations,
		GeneratorURL: j.alert.GeneratorURL,
		ExternalURL:  j.external,
		OpenedAt:     j.alert.StartsAt,
	}
	if j.playbook != nil {
		inc.Target = j.target.String()
		inc.Playbook = j.playbook.Name
		inc.Chain = j.playbook.Escalation
		inc.NeedsApproval = j.playbook.Guards.NeedsApproval
	}
	return inc
}

// Window is a maintenance window: no run acts on its namespaces (all, when
// Namespaces is empty) between Start and End.
type Window struct {
	Name       string
	Start, End time.Time
	Namespaces []string
}

// Covers reports whether the window is open at t for namespace ns.
func (w Window) Covers(t time.Time, ns string) bool {
	if t.Before(w.Start) || !t.Before(w.End) {
		return false
	}
	if len(w.Namespaces) == 0 {
		return true
	}
	for _, n := range w.Namespaces {
		if n == ns {
			return true
		}
	}
	return false
}
