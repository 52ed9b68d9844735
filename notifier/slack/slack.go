// Package slack posts incidents to Slack: one Block Kit message per
// incident, updated with chat.update as the incident changes, and every
// later event in that message's thread. The thread's timestamp is kept in
// the state store, so a restart keeps threading. Rate limits wait as long as
// Slack asks; outages are retried with backoff for Config.RetryFor.
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/companion/remediator/notifier"
)

// bucket holds one thread record per incident in the state store.
const bucket = "notifier_slack"

// maxBackoff caps the wait between retries of an outage.
const maxBackoff = time.Minute

// thread is what is kept of an incident's Slack message.
type thread struct {
	Channel          string            `json:"channel"`
	TS               string            `json:"ts"`
	Incident         notifier.Incident `json:"incident"`
	State            notifier.Kind     `json:"state"`
	By               string            `json:"by,omitempty"`
	Steps            []notifier.Step   `json:"steps,omitempty"`
	Escalation       string            `json:"escalation,omitempty"`
	AwaitingApproval bool              `json:"awaiting_approval,omitempty"`
}

// open reports whether the incident still wants a human.
func (th thread) open() bool {
	return th.State != notifier.Acknowledged && th.State != notifier.Resolved
}

var stateEmoji = map[notifier.Kind]string{
	notifier.Opened:        ":large_orange_circle:",
	notifier.NeedsApproval: ":hourglass:",
	notifier.Verified:      ":white_check_mark:",
	notifier.Failed:        ":red_circle:",
	notifier.Acknowledged:  ":eyes:",
	notifier.Resolved:      ":large_green_circle:",
}

func stateText(th thread) string {
	switch th.State {
	case notifier.NeedsApproval:
		return "awaiting approval"
	case notifier.Verified:
		return "fix verified"
	case notifier.Failed:
		return "remediation failed, needs a human"
	case notifier.Acknowledged:
		return "acknowledged by " + th.By
	case notifier.Resolved:
		return "resolved"
	default:
		return "remediating"
	}
}

// apply folds an event into the thread state.
func (th *thread) apply(ev notifier.Event) {
	if ev.Incident.AlertName != "" {
		th.Incident = ev.Incident
	}
	switch ev.Kind {
	case notifier.Opened:
		th.State = notifier.Opened
		if ev.Incident.NeedsApproval {
			th.State, th.AwaitingApproval = notifier.NeedsApproval, true
		}
	case notifier.StepDone:
		if ev.Step != nil {
			th.Steps = append(th.Steps, *ev.Step)
		}
		th.AwaitingApproval = false
	case notifier.NeedsApproval:
		th.State, th.AwaitingApproval = notifier.NeedsApproval, true
	case notifier.Verified, notifier.Failed:
		th.State, th.AwaitingApproval = ev.Kind, false
	case notifier.Acknowledged:
		if th.State != notifier.Resolved {
			th.State, th.By = notifier.Acknowledged, ev.By
		}
	case notifier.Resolved:
		th.State, th.AwaitingApproval = notifier.Resolved, false
	case notifier.Escalate:
		th.Escalation = ev.Text
	}
}

// Notifier posts incidents to one Slack channel. It is safe for concurrent
// use; events of one incident should come from one goroutine to keep their
// order.
type Notifier struct {
	cfg    Config
	api    *slack.Client
	store  notifier.Store
	logger *slog.Logger
	mu     sync.Mutex
}

// New returns a notifier for a validated config and its bot token.
func New(cfg Config, token string, store notifier.Store, logger *slog.Logger) *Notifier {
	opts := []slack.Option{slack.OptionHTTPClient(&http.Client{Timeout: cfg.Timeout})}
	if cfg.APIURL != "" {
		u := cfg.APIURL
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		opts = append(opts, slack.OptionAPIURL(u))
	}
	return &Notifier{cfg: cfg, api: slack.New(token, opts...), store: store, logger: logger}
}

// Notify posts an event of an incident: Opened posts the incident's
// message; every other event goes into its thread and updates the message.
// When the message could not be posted before, it is posted now.
func (n *Notifier) Notify(ctx context.Context, ev notifier.Event) error {
	return n.post(ctx, ev, nil)
}

// Page posts an escalation step in the incident's thread, mentioning who it
// is for, and shows it in the channel too. mentions are Slack markup
// (<@U0123>, <!subteam^S0123>).
func (n *Notifier) Page(ctx context.Context, ev notifier.Event, mentions []string) error {
	return n.post(ctx, ev, mentions)
}

func (n *Notifier) post(ctx context.Context, ev notifier.Event, mentions []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := ev.Incident.ID
	th, found, err := n.load(ctx, id)
	if err != nil {
		return err
	}
	if found && ev.Kind == notifier.Opened {
		return nil
	}
	th.apply(ev)
	if !found {
		if err := n.postHead(ctx, &th); err != nil {
			return err
		}
		if ev.Kind == notifier.Opened {
			return nil
		}
	} else if err := n.save(ctx, th); err != nil {
		return err
	}

	blocks := reply(ev, th)
	opts := []slack.MsgOption{slack.MsgOptionTS(th.TS), slack.MsgOptionDisableLinkUnfurl()}
	if len(mentions) > 0 {
		text := strings.Join(mentions, " ") + " please acknowledge"
		blocks = append([]slack.Block{slack.NewSectionBlock(mrkdwn(text), nil, nil)}, blocks...)
		blocks = append(blocks, slack.NewActionBlock("remediator_page",
			button(ActionAck, id, "Acknowledge", slack.StylePrimary)))
		opts = append(opts, slack.MsgOptionBroadcast())
	}
	opts = append(opts, slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(fallback(ev), false))
	var errs []error
	err = n.retry(ctx, "post reply in thread of incident "+id, func(ctx context.Context) error {
		_, _, err := n.api.PostMessageContext(ctx, th.Channel, opts...)
		return err
	})
	errs = append(errs, err)
	if found {
		errs = append(errs, n.updateHead(ctx, th))
	}
	return errors.Join(errs...)
}

// postHead posts the incident's message and keeps where it went.
func (n *Notifier) postHead(ctx context.Context, th *thread) error {
	ev := notifier.Event{Kind: notifier.Opened, Incident: th.Incident}
	err := n.retry(ctx, "post message of incident "+th.Incident.ID, func(ctx context.Context) error {
		ch, ts, err := n.api.PostMessageContext(ctx, n.cfg.Channel,
			slack.MsgOptionBlocks(head(*th)...), slack.MsgOptionText(fallback(ev), false),
			slack.MsgOptionDisableLinkUnfurl())
		th.Channel, th.TS = ch, ts
		return err
	})
	if err != nil {
		return err
	}
	return n.save(ctx, *th)
}

// updateHead rewrites the incident's message with its current state.
func (n *Notifier) updateHead(ctx context.Context, th thread) error {
	ev := notifier.Event{Kind: th.State, Incident: th.Incident}
	return n.retry(ctx, "update message of incident "+th.Incident.ID, func(ctx context.Context) error {
		_, _, _, err := n.api.UpdateMessageContext(ctx, th.Channel, th.TS,
			slack.MsgOptionBlocks(head(th)...), slack.MsgOptionText(fallback(ev), false))
		return err
	})
}

// retry calls call until it succeeds, fails for good, or Slack has been
// failing for longer than RetryFor. A rate limit waits as long as Slack
// asks; other transient failures back off exponentially.
func (n *Notifier) retry(ctx context.Context, what string, call func(context.Context) error) error {
	start := time.Now()
	backoff := n.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
		err := call(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !transient(err) {
			return fmt.Errorf("slack %s: %w", what, err)
		}
		wait := backoff
		var limited *slack.RateLimitedError
		if errors.As(err, &limited) {
			wait = limited.RetryAfter
		} else {
			backoff = min(2*backoff, maxBackoff)
		}
		if time.Since(start)+wait > n.cfg.RetryFor {
			return fmt.Errorf("slack %s: still failing after %d attempts in %s: %w",
				what, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		n.logger.DebugContext(ctx, "slack_retry", "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("slack %s: %w", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// transientErrors are Slack API errors worth retrying.
var transientErrors = map[string]bool{
	"internal_error": true, "fatal_error": true, "service_unavailable": true,
	"request_timeout": true, "ratelimited": true,
}

// transient reports whether err may pass: rate limits, 5xx answers, Slack's
// own internal errors, and network failures. Refusals such as invalid_auth
// or channel_not_found are final.
func transient(err error) bool {
	var limited *slack.RateLimitedError
	var status slack.StatusCodeError
	var api slack.SlackErrorResponse
	switch {
	case errors.As(err, &limited):
		return true
	case errors.As(err, &status):
		return status.Code >= 500 || status.Code == http.StatusTooManyRequests ||
			status.Code == http.StatusRequestTimeout
	case errors.As(err, &api):
		return transientErrors[api.Err]
	default:
		return true
	}
}

func (n *Notifier) load(ctx context.Context, id string) (thread, bool, error) {
	b, ok, err := n.store.Get(ctx, bucket, id)
	if err != nil {
		return thread{}, false, fmt.Errorf("read slack thread of incident %s: %w", id, err)
	}
	if !ok {
		return thread{Incident: notifier.Incident{ID: id}, State: notifier.Opened}, false, nil
	}
	var th thread
	if err := json.Unmarshal(b, &th); err != nil {
		return thread{}, false, fmt.Errorf("decode slack thread of incident %s: %w", id, err)
	}
	return th, true, nil
}

func (n *Notifier) save(ctx context.Context, th thread) error {
	b, err := json.Marshal(th)
	if err != nil {
		return fmt.Errorf("encode slack thread of incident %s: %w", th.Incident.ID, err)
	}
	if err := n.store.Put(ctx, bucket, th.Incident.ID, b); err != nil {
		return fmt.Errorf("save slack thread of incident %s: %w", th.Incident.ID, err)
	}
	return nil
}
