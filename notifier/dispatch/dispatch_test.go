package dispatch

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/notifier/email"
	"github.com/companion/remediator/notifier/escalation"
	"github.com/companion/remediator/notifier/internal/fakeclock"
	"github.com/companion/remediator/notifier/internal/slackfake"
	"github.com/companion/remediator/notifier/internal/smtpfake"
	"github.com/companion/remediator/notifier/slack"
	"github.com/companion/remediator/remediator/state"
)

var opened = time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)

// env is one dispatcher wired to a fake Slack and a real SMTP server.
type env struct {
	slack *slackfake.Server
	smtp  *smtpfake.Server
	clock *fakeclock.Clock
	reg   *prometheus.Registry
	cfg   Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	t.Setenv("REMEDIATOR_TEST_SLACK_TOKEN", "xoxb-test-token")
	t.Setenv("REMEDIATOR_TEST_SMTP_PASSWORD", smtpfake.Password)
	e := &env{
		slack: slackfake.Start(t), smtp: smtpfake.Start(t, smtpfake.OfferStartTLS, 0),
		clock: fakeclock.New(opened), reg: prometheus.NewRegistry(),
	}
	e.cfg = Config{
		Slack: &slack.Config{TokenEnv: "REMEDIATOR_TEST_SLACK_TOKEN", Channel: "#incidents",
			APIURL: e.slack.URL(), RetryBackoff: 10 * time.Millisecond, RetryFor: 200 * time.Millisecond},
		Email: &email.Config{Smarthost: e.smtp.Addr, From: "remediator@example.com",
			CAFile: e.smtp.CAFile, Username: smtpfake.Username,
			PasswordEnv: "REMEDIATOR_TEST_SMTP_PASSWORD", RetryBackoff: 10 * time.Millisecond},
		Escalation: escalation.Config{Teams: map[string]escalation.Recipients{
			escalation.TeamOperations:  {Slack: []string{"S0OPS"}, Email: []string{"ops@example.com"}},
			escalation.TeamEngineering: {Email: []string{"eng@example.com"}},
			escalation.TeamManager:     {Email: []string{"boss@example.com"}},
		}},
	}
	return e
}

func (e *env) start(t *testing.T, store notifier.Store) *Dispatcher {
	t.Helper()
	d, err := New(e.cfg, store, slog.New(slog.DiscardHandler), e.reg, e.clock)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func (e *env) at(t *testing.T, d *Dispatcher, after time.Duration) {
	t.Helper()
	e.clock.Set(opened.Add(after))
	require.NoError(t, d.Tick(context.Background()))
}

// mails returns "recipients: subject" of every delivered message.
func (e *env) mails(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range e.smtp.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		require.NoError(t, err)
		require.True(t, m.TLS)
		out = append(out, strings.Join(m.To, ",")+": "+msg.Header.Get("Subject"))
	}
	return out
}

// waitSlack waits until some call the fake Slack recorded satisfies ok.
func (e *env) waitSlack(t *testing.T, ok func(slackfake.Call) bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, c := range e.slack.Sent() {
			if ok(c) {
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond)
}

// oneThread checks that every call so far belongs to one incident message
// and returns that message.
func (e *env) oneThread(t *testing.T) slackfake.Call {
	t.Helper()
	var head slackfake.Call
	for _, c := range e.slack.Sent() {
		if c.Method == "chat.postMessage" && c.ThreadTS == "" {
			require.Empty(t, head.TS, "a second head message")
			head = c
		}
	}
	require.NotEmpty(t, head.TS)
	for _, c := range e.slack.Sent() {
		switch {
		case c.Method == "chat.update":
			require.Equal(t, head.TS, c.TS)
		case c.TS != head.TS:
			require.Equal(t, head.TS, c.ThreadTS)
		}
	}
	return head
}

func broadcast(c slackfake.Call) bool { return c.Broadcast }

func firing() notifier.Incident {
	return notifier.Incident{
		ID: "inc-7", AlertName: "HighErrorRate", Severity: "high", Target: "deployment shop/checkout",
		Playbook: "high-error-rate", Summary: "5xx above 5%", OpenedAt: opened,
	}
}

func TestAlertEndToEnd(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, state.NewMemory())
	ctx := context.Background()
	inc := firing()

	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.StepDone, Incident: inc,
		Step: &notifier.Step{Name: "restart", Action: "restart", Result: "ok"}}))
	e.at(t, d, 0)

	// Step 1 (operations): a page in the thread and an email. The page may
	// reach Slack before the queued events; either way there is one head.
	var head, page slackfake.Call
	require.Eventually(t, func() bool {
		var gotStep bool
		for _, c := range e.slack.Sent() {
			switch {
			case c.Method == "chat.postMessage" && c.ThreadTS == "":
				head = c
			case c.Broadcast:
				page = c
			case c.Method == "chat.postMessage" && strings.Contains(slackfake.Text(c), "`restart`"):
				gotStep = true
			}
		}
		return head.TS != "" && page.TS != "" && gotStep
	}, 5*time.Second, 5*time.Millisecond)
	require.Contains(t, slackfake.Header(t, head), "HighErrorRate")
	require.Equal(t, head.TS, page.ThreadTS)
	require.Contains(t, slackfake.Text(page), "<!subteam^S0OPS> please acknowledge")
	require.Contains(t, slackfake.Text(page), "Escalation step 1 of 3 (chain p1): operations")
	require.Equal(t, []string{"ops@example.com: [high] HighErrorRate on deployment shop/checkout: " +
		"Escalation step 1 of 3 (chain p1): operations"}, e.mails(t))
	require.InDelta(t, 1, testutil.ToFloat64(d.unacked), 0)

	// Step 2 (engineering) after an hour, not before.
	e.at(t, d, 59*time.Minute)
	require.Len(t, e.smtp.Messages(), 1)
	e.at(t, d, time.Hour)
	require.Len(t, e.smtp.Messages(), 2)
	require.Contains(t, e.mails(t)[1], "eng@example.com: ")

	// An acknowledgement stops the chain and tells who was emailed.
	require.NoError(t, d.Ack(ctx, "inc-7", "alice"))
	require.ErrorIs(t, d.Ack(ctx, "inc-7", "bob"), ErrNotFound)
	require.Eventually(t, func() bool { return len(e.smtp.Messages()) == 3 },
		5*time.Second, 5*time.Millisecond)
	require.Equal(t, "ops@example.com,eng@example.com: [high] HighErrorRate on "+
		"deployment shop/checkout: acknowledged by alice", e.mails(t)[2])
	e.at(t, d, 5*time.Hour)
	require.Len(t, e.smtp.Messages(), 3, "the manager is never emailed")
	require.InDelta(t, 0, testutil.ToFloat64(d.unacked), 0)

	require.Eventually(t, func() bool {
		last := e.slack.Sent()[len(e.slack.Sent())-1]
		return last.Method == "chat.update" &&
			strings.Contains(slackfake.Header(t, last), "acknowledged by alice")
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, head.TS, e.oneThread(t).TS)
	require.Eventually(t, func() bool {
		// Opened, the step, two pages and the acknowledgement.
		return testutil.ToFloat64(d.deliveries.WithLabelValues(integrationSlack, resultSent)) == 5
	}, 5*time.Second, 5*time.Millisecond)
	require.InDelta(t, 2, testutil.ToFloat64(d.steps.WithLabelValues("p1", escalation.ResultSent)), 0)
}

func TestResolvedStopsChain(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, state.NewMemory())
	ctx := context.Background()
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: firing()}))
	e.at(t, d, 0)
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Resolved, Incident: firing()}))
	e.at(t, d, 3*time.Hour)
	require.Eventually(t, func() bool { return len(e.smtp.Messages()) == 2 },
		5*time.Second, 5*time.Millisecond)
	require.Contains(t, e.mails(t)[1], "ops@example.com: [high] HighErrorRate on "+
		"deployment shop/checkout: resolved")
	require.ErrorIs(t, d.Ack(ctx, "inc-7", "alice"), ErrNotFound)
}

func TestSlackDownFallsBackToEmail(t *testing.T) {
	e := newEnv(t)
	e.slack.SetFail(func(_ string, _ int, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	e.cfg.Escalation.Teams[escalation.TeamOperations] = escalation.Recipients{Slack: []string{"S0OPS"}}
	d := e.start(t, state.NewMemory())
	ctx := context.Background()
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: firing()}))

	e.at(t, d, 0)
	mails := e.mails(t)
	require.Len(t, mails, 1, "Slack stayed down, so the chain's addresses were emailed")
	require.True(t, strings.HasPrefix(mails[0], "eng@example.com,boss@example.com: "), mails[0])
	require.InDelta(t, 1, testutil.ToFloat64(d.deliveries.WithLabelValues(integrationEmail, resultSent)), 0)
	rec, ok, err := d.engine.Get(ctx, "inc-7")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, escalation.ResultSent, rec.Sent[0].Result)
}

func TestEmailDownDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := l.Addr().String()
	require.NoError(t, l.Close())
	e.cfg.Email.Smarthost = down
	e.cfg.Slack = nil
	d := e.start(t, state.NewMemory())
	ctx := context.Background()

	start := time.Now()
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: firing()}))
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.StepDone, Incident: firing(),
		Step: &notifier.Step{Name: "restart", Result: "ok"}}))
	require.Less(t, time.Since(start), 100*time.Millisecond, "notifying never waits for SMTP")

	e.at(t, d, 0)
	rec, _, err := d.engine.Get(ctx, "inc-7")
	require.NoError(t, err)
	require.Equal(t, escalation.ResultFailed, rec.Sent[0].Result)
	require.Contains(t, rec.Sent[0].Err, "email via "+down+" (attempt 3 of 3)")
	require.InDelta(t, 1, testutil.ToFloat64(d.deliveries.WithLabelValues(integrationEmail, resultFailed)), 0)

	e.at(t, d, 30*time.Minute)
	rec, _, err = d.engine.Get(ctx, "inc-7")
	require.NoError(t, err)
	require.Len(t, rec.Sent, 1, "a failed step is recorded, not repeated")
}

// TestRestartMidChain stops a dispatcher after the first step and starts a
// new one on the same bbolt file: the chain goes on without repeating, and
// Slack keeps the thread.
func TestRestartMidChain(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := context.Background()

	store, err := state.OpenBolt(path)
	require.NoError(t, err)
	first, err := New(e.cfg, store, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), e.clock)
	require.NoError(t, err)
	require.NoError(t, first.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: firing()}))
	e.waitSlack(t, func(c slackfake.Call) bool { return c.ThreadTS == "" })
	e.at(t, first, 0)
	e.waitSlack(t, broadcast)
	require.NoError(t, first.Close())
	require.NoError(t, store.Close())

	store, err = state.OpenBolt(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	second := e.start(t, store)
	e.at(t, second, 0)
	require.Len(t, e.smtp.Messages(), 1, "step 1 is not sent again")
	e.at(t, second, time.Hour)
	require.Len(t, e.smtp.Messages(), 2)
	require.Contains(t, e.mails(t)[1], "eng@example.com: ")
	require.NoError(t, second.Notify(ctx, notifier.Event{Kind: notifier.Resolved, Incident: firing()}))

	e.waitSlack(t, func(c slackfake.Call) bool {
		return c.Method == "chat.update" && strings.Contains(slackfake.Header(t, c), "resolved")
	})
	e.oneThread(t)
	require.Len(t, e.slack.Sent(), 7, "head, two pages and the resolution, each with an update but the first")
}

func TestAckHandler(t *testing.T) {
	e := newEnv(t)
	e.cfg.Slack, e.cfg.Email = nil, nil
	d := e.start(t, state.NewMemory())
	ctx := context.Background()
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: firing()}))
	mux := http.NewServeMux()
	mux.Handle("/api/v1/incidents/{id}/ack", d.AckHandler(nil))

	tests := []struct {
		name   string
		method string
		id     string
		body   string
		code   int
		want   string
	}{
		{name: "wrong method", method: http.MethodGet, id: "inc-7", code: 405},
		{name: "bad body", method: http.MethodPost, id: "inc-7", body: "{", code: 400,
			want: "decode body"},
		{name: "acknowledged", method: http.MethodPost, id: "inc-7", body: `{"by":"alice"}`,
			code: 200, want: `{"incident":"inc-7","acknowledged_by":"alice"}`},
		{name: "second time", method: http.MethodPost, id: "inc-7", code: 404,
			want: "no running escalation"},
		{name: "unknown", method: http.MethodPost, id: "nope", code: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/api/v1/incidents/"+tt.id+"/ack",
				strings.NewReader(tt.body))
			rr := httptest.NewRecorder()
			mux.ServeHTTP(rr, req)
			require.Equal(t, tt.code, rr.Code, rr.Body.String())
			require.Contains(t, rr.Body.String(), tt.want)
		})
	}
	require.NoError(t, d.Tick(ctx))
	require.InDelta(t, 0, testutil.ToFloat64(d.unacked), 0)
}

func TestNewFailsClearly(t *testing.T) {
	tests := []struct {
		name   string
		change func(*env)
		want   string
	}{
		{name: "token variable unset", want: "environment variable REMEDIATOR_NO_SUCH_TOKEN",
			change: func(e *env) { e.cfg.Slack.TokenEnv = "REMEDIATOR_NO_SUCH_TOKEN" }},
		{name: "password file missing", want: "read smtp password file",
			change: func(e *env) {
				e.cfg.Email.PasswordEnv, e.cfg.Email.PasswordFile = "", "/nonexistent/pw"
			}},
		{name: "invalid config", want: "notify.email: tls none: credentials are never sent",
			change: func(e *env) { e.cfg.Email.TLS = email.NoTLS }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tt.change(e)
			_, err := New(e.cfg, state.NewMemory(), slog.New(slog.DiscardHandler), nil, nil)
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), smtpfake.Password)
		})
	}
}

func TestMetricsRegistered(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, state.NewMemory())
	require.NoError(t, d.Notify(context.Background(),
		notifier.Event{Kind: notifier.Opened, Incident: firing()}))
	e.at(t, d, 0)
	families, err := e.reg.Gather()
	require.NoError(t, err)
	labels := map[string][]string{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			labels[f.GetName()] = append(labels[f.GetName()], strings.Join(ls, ","))
		}
	}
	require.Contains(t, labels["remediator_notifier_deliveries_total"], "integration=email,result=sent")
	require.Contains(t, labels["remediator_notifier_escalation_steps_total"], "chain=p1,result=sent")
	require.Contains(t, labels, "remediator_notifier_unacknowledged_incidents")
	for _, ls := range labels {
		for _, l := range ls {
			require.NotContains(t, l, "inc-7", "no incident ids in labels")
		}
	}
}

func TestNewAgainOnOneRegistry(t *testing.T) {
	e := newEnv(t)
	first := e.start(t, state.NewMemory())
	require.NoError(t, first.Notify(context.Background(),
		notifier.Event{Kind: notifier.Opened, Incident: firing()}))
	e.at(t, first, 0)
	second := e.start(t, state.NewMemory())
	require.Same(t, first.steps, second.steps, "a reload keeps counting on the same series")
	require.InDelta(t, 1, testutil.ToFloat64(second.steps.WithLabelValues("p1", escalation.ResultSent)), 0)
	require.InDelta(t, 0, testutil.ToFloat64(second.steps.WithLabelValues("p0", escalation.ResultSent)), 0)
}

// TestRunSendsStepsAsTheyFallDue drives the real timer loop: the first
// step goes out on its own, and an escalate event brings the next one
// forward.
func TestRunSendsStepsAsTheyFallDue(t *testing.T) {
	e := newEnv(t)
	e.cfg.Slack = nil
	e.cfg.Escalation.PollInterval = 10 * time.Millisecond
	d := e.start(t, state.NewMemory())
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		d.Run(ctx)
	}()

	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: firing()}))
	require.Eventually(t, func() bool { return len(e.smtp.Messages()) == 1 },
		5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return testutil.ToFloat64(d.unacked) == 1 },
		5*time.Second, 5*time.Millisecond)

	e.clock.Set(opened.Add(5 * time.Minute))
	require.NoError(t, d.Notify(ctx, notifier.Event{Kind: notifier.Escalate, Incident: firing()}))
	require.Eventually(t, func() bool { return len(e.smtp.Messages()) == 2 },
		5*time.Second, 5*time.Millisecond)
	require.Contains(t, e.mails(t)[1], "eng@example.com: ", "engineering asked before the hour")

	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
