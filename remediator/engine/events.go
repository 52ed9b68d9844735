package engine

import (
	"context"

	"github.com/companion/remediator/notifier"
)

// eventQueue delivers one run's notifications in order on a goroutine of
// its own, so that a slow notifier (escalation bookkeeping, a Slack call)
// never delays the run's next action.
type eventQueue struct {
	ch   chan queuedEvent
	done chan struct{}
}

type queuedEvent struct {
	ev    notifier.Event
	reply chan error
}

func (e *Engine) startEvents(ctx context.Context) *eventQueue {
	q := &eventQueue{ch: make(chan queuedEvent, 64), done: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(q.done)
		for qe := range q.ch {
			err := e.notifier.Notify(ctx, qe.ev)
			if qe.reply != nil {
				qe.reply <- err
				continue
			}
			if err != nil {
				e.logger.WarnContext(ctx, "notification failed", "incident", qe.ev.Incident.ID,
					"event", string(qe.ev.Kind), "err", err)
			}
		}
	}()
	return q
}

// send queues ev; its failure is logged.
func (q *eventQueue) send(ev notifier.Event) { q.ch <- queuedEvent{ev: ev} }

// sendWait queues ev after everything sent before it and waits for its
// result, or for ctx to end.
func (q *eventQueue) sendWait(ctx context.Context, ev notifier.Event) error {
	reply := make(chan error, 1)
	q.ch <- queuedEvent{ev: ev, reply: reply}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close waits until every queued notification is delivered.
func (q *eventQueue) close() {
	close(q.ch)
	<-q.done
}

// emit queues a notification about the run's incident.
func (e *Engine) emit(j job, kind notifier.Kind, text string, step *notifier.Step) {
	j.events.send(notifier.Event{Kind: kind, Incident: e.eventIncident(j), Step: step,
		Text: text, At: e.opts.Now()})
}
