package notifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// Log writes every event to the logger and, when Out is set, one plain line
// to Out (the console notifier of `make run`).
type Log struct {
	Logger *slog.Logger
	Out    io.Writer

	mu sync.Mutex
}

// Notify implements Notifier.
func (l *Log) Notify(ctx context.Context, ev Event) error {
	attrs := []any{
		"event", string(ev.Kind),
		"incident", ev.Incident.ID,
		"alert", ev.Incident.AlertName,
		"target", ev.Incident.Target,
		"playbook", ev.Incident.Playbook,
	}
	if ev.Step != nil {
		attrs = append(attrs, "step", ev.Step.Name, "action", ev.Step.Action,
			"result", ev.Step.Result, "summary", ev.Step.Summary)
		if ev.Step.Error != "" {
			attrs = append(attrs, "err", ev.Step.Error)
		}
	}
	if ev.Text != "" {
		attrs = append(attrs, "text", ev.Text)
	}
	if ev.By != "" {
		attrs = append(attrs, "by", ev.By)
	}
	if l.Logger != nil {
		l.Logger.InfoContext(ctx, "notification", attrs...)
	}
	if l.Out == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := fmt.Fprintln(l.Out, consoleLine(ev))
	return err
}

func consoleLine(ev Event) string {
	head := fmt.Sprintf("[%s] %s %s", ev.Kind, ev.Incident.AlertName,
		ev.Incident.Target)
	switch {
	case ev.Step != nil:
		return fmt.Sprintf("%s step %s (%s): %s %s", head, ev.Step.Name,
			ev.Step.Action, ev.Step.Result, ev.Step.Summary)
	case ev.By != "":
		return fmt.Sprintf("%s by %s %s", head, ev.By, ev.Text)
	default:
		return fmt.Sprintf("%s %s", head, ev.Text)
	}
}

// Multi sends each event to every notifier in turn and joins their errors;
// one failing integration does not stop the others.
type Multi []Notifier

// Notify implements Notifier.
func (m Multi) Notify(ctx context.Context, ev Event) error {
	var errs []error
	for _, n := range m {
		if err := n.Notify(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
