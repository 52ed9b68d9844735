package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/alertmanager/template"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/remediator/state"
)

// lockWait bounds how long an incident update waits for another writer.
const lockWait = 5 * time.Second

// updateIncident reads, changes and writes one incident under the store's
// lock, so that replicas and workers never overwrite each other's runs.
// create builds the incident when it does not exist yet; with create nil a
// missing incident is left alone and found is false.
func (e *Engine) updateIncident(ctx context.Context, id string,
	create func() state.Incident, change func(*state.Incident),
) (found bool, err error) {
	if u, ok := e.store.(state.IncidentUpdater); ok {
		err := u.UpdateIncident(ctx, id, func(inc *state.Incident, exists bool) bool {
			if !exists {
				if create == nil {
					return false
				}
				*inc = create()
			}
			found = true
			change(inc)
			return true
		})
		if err != nil {
			return false, fmt.Errorf("update incident %s: %w", id, err)
		}
		return found, nil
	}
	owner := fmt.Sprintf("incident-update-%d", time.Now().UnixNano())
	key := "incident/" + id
	deadline := time.Now().Add(lockWait)
	for {
		ok, err := e.store.Lock(ctx, key, owner, lockWait)
		if err != nil {
			return false, fmt.Errorf("lock incident %s: %w", id, err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("lock incident %s: held by another writer for %s: %w",
				id, lockWait, state.ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("lock incident %s: %w", id, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	defer func() {
		if uerr := e.store.Unlock(context.WithoutCancel(ctx), key, owner); uerr != nil {
			e.logger.ErrorContext(ctx, "unlock incident", "incident", id, "err", uerr)
		}
	}()

	inc, found, err := e.store.Incident(ctx, id)
	if err != nil {
		return false, fmt.Errorf("read incident %s: %w", id, err)
	}
	if !found {
		if create == nil {
			return false, nil
		}
		inc = create()
	}
	change(&inc)
	if err := e.store.SaveIncident(ctx, inc); err != nil {
		return found, fmt.Errorf("save incident %s: %w", id, err)
	}
	return true, nil
}

func newIncident(id, external string, a template.Alert, now time.Time) state.Incident {
	return state.Incident{
		ID:           id,
		Fingerprint:  fingerprint(a),
		AlertName:    a.Labels["alertname"],
		Severity:     a.Labels["severity"],
		Labels:       a.Labels,
		Annotations:  a.Annotations,
		StartsAt:     a.StartsAt,
		GeneratorURL: a.GeneratorURL,
		ExternalURL:  external,
		Status:       state.StatusOpen,
		OpenedAt:     now,
	}
}

// saveRun replaces the run's record in its incident, creating the incident
// on the alert's first run.
func (e *Engine) saveRun(ctx context.Context, j job, run state.Run) error {
	var create func() state.Incident
	if j.alert.Labels != nil {
		now := e.opts.Now()
		create = func() state.Incident { return newIncident(j.incident, j.external, j.alert, now) }
	}
	_, err := e.updateIncident(ctx, j.incident, create, func(inc *state.Incident) {
		for i := range inc.Runs {
			if inc.Runs[i].ID == run.ID {
				inc.Runs[i] = run
				return
			}
		}
		inc.Runs = append(inc.Runs, run)
	})
	return err
}

// RecoverInterrupted deals with what a previous process left unfinished.
// Runs it claimed but never started get their claims released, so the
// alert's next notification from Alertmanager (its repeat_interval) runs
// them. Runs it started but never finished are marked interrupted: they may
// have acted, so they are not run again, and a human is told. It must only
// be called with a store no other live process uses. It returns how many
// runs it dealt with.
func (e *Engine) RecoverInterrupted(ctx context.Context) (int, error) {
	pending, err := e.store.List(ctx, bucketPending)
	if err != nil {
		return 0, fmt.Errorf("list pending runs: %w", err)
	}
	for runID, claim := range pending {
		if err := e.store.Release(ctx, string(claim)); err != nil {
			return 0, fmt.Errorf("release claim of pending run %s: %w", runID, err)
		}
		if err := e.store.Delete(ctx, bucketPending, runID); err != nil {
			return 0, fmt.Errorf("forget pending run %s: %w", runID, err)
		}
		e.logger.WarnContext(ctx, "run lost by the last stop, claim released for the next notification",
			"run", runID, "claim", string(claim))
	}
	done, err := e.markInterrupted(ctx)
	return len(pending) + done, err
}

func (e *Engine) markInterrupted(ctx context.Context) (int, error) {
	incs, err := e.store.Incidents(ctx, true)
	if err != nil {
		return 0, fmt.Errorf("list open incidents: %w", err)
	}
	n := 0
	for _, inc := range incs {
		for _, r := range inc.Runs {
			if r.Result != ResultRunning {
				continue
			}
			run := r
			run.Result = ResultInterrupted
			run.Reason = "the remediator stopped before the run finished; check the target by hand"
			run.Finished = e.opts.Now()
			j := job{incident: inc.ID, runID: r.ID}
			if err := e.saveRun(ctx, j, run); err != nil {
				return n, err
			}
			e.logger.WarnContext(ctx, "run interrupted by restart",
				"incident", inc.ID, "run", r.ID, "playbook", r.Playbook, "target", r.Target)
			e.notify(ctx, notifier.Event{Kind: notifier.Failed, Incident: notifier.Incident{
				ID: inc.ID, AlertName: inc.AlertName, Severity: inc.Severity,
				Summary: inc.Annotations["summary"], Labels: inc.Labels,
				Annotations: inc.Annotations, Target: r.Target, Playbook: r.Playbook,
				GeneratorURL: inc.GeneratorURL, ExternalURL: inc.ExternalURL, OpenedAt: inc.OpenedAt,
			}, Text: run.Reason, At: e.opts.Now()})
			n++
		}
	}
	return n, nil
}

// ErrAlreadyClosed is returned by Acknowledge for an incident that was
// already acknowledged or has resolved; the incident is left unchanged.
var ErrAlreadyClosed = errors.New("incident already acknowledged or resolved")

// Acknowledge records that by took the incident. It reports whether the
// incident exists, and returns ErrAlreadyClosed, naming who acknowledged or
// that it resolved, when there is nothing left to take.
func (e *Engine) Acknowledge(ctx context.Context, id, by string) (bool, error) {
	now := e.opts.Now()
	var closed error
	found, err := e.updateIncident(ctx, id, nil, func(inc *state.Incident) {
		switch {
		case inc.Status == state.StatusResolved:
			closed = fmt.Errorf("incident %s resolved at %s: %w", id,
				inc.ClosedAt.UTC().Format(time.RFC3339), ErrAlreadyClosed)
		case inc.AckedBy != "":
			closed = fmt.Errorf("incident %s was acknowledged by %s at %s: %w", id,
				inc.AckedBy, inc.AckedAt.UTC().Format(time.RFC3339), ErrAlreadyClosed)
		default:
			inc.AckedBy, inc.AckedAt = by, now
			inc.Status = state.StatusAcknowledged
		}
	})
	if err != nil {
		return found, err
	}
	return found, closed
}
