package slack

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/notifier/internal/slackfake"
	"github.com/companion/remediator/remediator/state"
)

func testConfig(f *slackfake.Server) Config {
	c := Config{TokenEnv: "X", Channel: "#incidents", APIURL: f.URL(),
		RetryBackoff: 20 * time.Millisecond, RetryFor: 2 * time.Second}
	c.ApplyDefaults()
	return c
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func incident() notifier.Incident {
	return notifier.Incident{
		ID: "inc-1", AlertName: "HighErrorRate", Severity: "critical",
		Summary: "5xx ratio above 5%", Target: "deployment shop/checkout",
		Playbook: "high-error-rate", ExternalURL: "http://alertmanager.local:9093",
		GeneratorURL: "http://prometheus.local:9090/graph?g0.expr=x",
		OpenedAt:     time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC),
	}
}

func TestOneThreadPerIncident(t *testing.T) {
	f := slackfake.Start(t)
	store := state.NewMemory()
	n := New(testConfig(f), "xoxb-test", store, quiet())
	ctx := context.Background()
	inc := incident()

	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.StepDone, Incident: inc,
		Step: &notifier.Step{Name: "restart", Action: "restart", Result: "ok",
			Summary: "rolled out 3/3"}}))
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}),
		"a repeated Opened posts nothing")
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Resolved, Incident: inc}))

	calls := f.Sent()
	require.Len(t, calls, 5, "head, reply+update, reply+update")
	head := calls[0]
	require.Equal(t, "chat.postMessage", head.Method)
	require.Equal(t, "#incidents", head.Channel)
	require.Empty(t, head.ThreadTS)
	require.Contains(t, slackfake.Header(t, head), "HighErrorRate: remediating")
	text := slackfake.Text(head)
	for _, want := range []string{"*Severity*\ncritical", "*Target*\ndeployment shop/checkout",
		"*Playbook*\nhigh-error-rate", "5xx ratio above 5%", "Incident inc-1"} {
		require.Contains(t, text, want)
	}
	require.Equal(t, map[string]string{
		"remediator_ack":          "ack:inc-1",
		"remediator_alertmanager": inc.ExternalURL,
		"remediator_source":       inc.GeneratorURL,
	}, slackfake.Buttons(head))

	reply, update := calls[1], calls[2]
	require.Equal(t, "chat.postMessage", reply.Method)
	require.Equal(t, head.TS, reply.ThreadTS, "the step goes into the thread")
	require.Contains(t, slackfake.Text(reply), "`restart` (restart): *ok* rolled out 3/3")
	require.Equal(t, "chat.update", update.Method)
	require.Equal(t, head.TS, update.TS)
	require.Equal(t, "C0INCIDENTS", update.Channel, "updates use the channel ID Slack returned")
	require.Contains(t, slackfake.Text(update), "*Steps*\n• `restart`")

	final := calls[4]
	require.Equal(t, "chat.update", final.Method)
	require.Contains(t, slackfake.Header(t, final), "resolved")
	require.NotContains(t, slackfake.Buttons(final), "remediator_ack", "nothing to acknowledge any more")
	require.Equal(t, head.TS, calls[3].ThreadTS)
}

func TestApprovalButtons(t *testing.T) {
	f := slackfake.Start(t)
	n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
	inc := incident()
	inc.NeedsApproval = true
	ctx := context.Background()

	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.NeedsApproval, Incident: inc,
		Text: "scale to 6 replicas"}))

	calls := f.Sent()
	require.Len(t, calls, 3)
	want := map[string]string{"remediator_approve": "approve:inc-1", "remediator_deny": "deny:inc-1"}
	for _, c := range calls {
		got := slackfake.Buttons(c)
		for id, v := range want {
			require.Equal(t, v, got[id], "%s of %s", id, c.Method)
		}
	}
	for _, v := range []string{"approve:inc-1", "deny:inc-1", "ack:inc-1"} {
		action, id, err := ParseButtonValue(v)
		require.NoError(t, err)
		require.Equal(t, "inc-1", id)
		require.Equal(t, v, ButtonValue(action, id))
	}
	_, _, err := ParseButtonValue("reboot:inc-1")
	require.ErrorContains(t, err, "unknown action")
}

func TestRestartKeepsThreading(t *testing.T) {
	f := slackfake.Start(t)
	store := state.NewMemory()
	ctx := context.Background()
	inc := incident()
	first := New(testConfig(f), "xoxb-test", store, quiet())
	require.NoError(t, first.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))

	second := New(testConfig(f), "xoxb-test", store, quiet())
	require.NoError(t, second.Notify(ctx, notifier.Event{Kind: notifier.Failed, Incident: inc,
		Text: "rollout did not finish"}))

	calls := f.Sent()
	require.Len(t, calls, 3)
	require.Equal(t, calls[0].TS, calls[1].ThreadTS)
	require.Equal(t, calls[0].TS, calls[2].TS)
	require.Contains(t, slackfake.Header(t, calls[2]), "needs a human")
}

func TestPageMentionsAndBroadcasts(t *testing.T) {
	f := slackfake.Start(t)
	n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
	ctx := context.Background()
	inc := incident()
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))
	require.NoError(t, n.Page(ctx, notifier.Event{Kind: notifier.Escalate, Incident: inc,
		Text: "Escalation step 2 of 3 (chain p1): engineering"},
		[]string{"<@U0ALICE>", "<!subteam^S0ENG>"}))

	calls := f.Sent()
	require.Len(t, calls, 3)
	page := calls[1]
	require.True(t, page.Broadcast)
	require.Equal(t, calls[0].TS, page.ThreadTS)
	require.Contains(t, slackfake.Text(page), "<@U0ALICE> <!subteam^S0ENG> please acknowledge")
	require.Equal(t, "ack:inc-1", slackfake.Buttons(page)["remediator_ack"])
	require.Contains(t, slackfake.Text(calls[2]), "*Escalation*\nEscalation step 2 of 3")
}

func TestPageWithoutHeadPostsHeadFirst(t *testing.T) {
	f := slackfake.Start(t)
	n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
	require.NoError(t, n.Page(context.Background(), notifier.Event{Kind: notifier.Escalate,
		Incident: incident(), Text: "step 1"}, []string{"<!here>"}))
	calls := f.Sent()
	require.Len(t, calls, 2, "the head, then the page in its thread")
	require.Empty(t, calls[0].ThreadTS)
	require.Equal(t, calls[0].TS, calls[1].ThreadTS)
}

func TestLongAndForeignTextIsCut(t *testing.T) {
	f := slackfake.Start(t)
	n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
	inc := incident()
	inc.AlertName = strings.Repeat("Größenüberschreitung ", 12)
	inc.Summary = "Zähler überläuft\r\nin der Warteschlange 🚨 <!channel> " +
		strings.Repeat("応答時間が長すぎます😱", 400)
	inc.Target = strings.Repeat("ü", 2500)
	ctx := context.Background()
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Message, Incident: inc,
		Text: strings.Repeat("&", 4000)}))

	calls := f.Sent()
	require.Len(t, calls, 3)
	for _, c := range calls {
		require.LessOrEqual(t, utf8.RuneCountInString(c.Text), maxFallback)
		for _, b := range c.Blocks.BlockSet {
			switch b := b.(type) {
			case *slack.HeaderBlock:
				require.LessOrEqual(t, utf8.RuneCountInString(b.Text.Text), maxHeader)
				require.True(t, strings.HasSuffix(b.Text.Text, "…"))
			case *slack.SectionBlock:
				if b.Text != nil {
					require.LessOrEqual(t, utf8.RuneCountInString(b.Text.Text), maxSectionText)
					require.True(t, utf8.ValidString(b.Text.Text))
				}
				for _, fl := range b.Fields {
					require.LessOrEqual(t, utf8.RuneCountInString(fl.Text), maxField)
				}
			}
		}
	}
	text := slackfake.Text(calls[0])
	require.NotContains(t, text, "<!channel>", "alert text cannot mention the channel")
	require.Contains(t, text, "&lt;!channel&gt;")
	require.Contains(t, text, "Zähler überläuft\r\nin der Warteschlange 🚨")
	require.Contains(t, text, "応答時間が長すぎます😱")
	require.Contains(t, text, "…")
	reply := slackfake.Text(calls[1])
	require.True(t, strings.HasSuffix(reply, "&amp;…"), "no half entity before the ellipsis")
}

func TestCut(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{name: "short stays", in: "abc", max: 3, want: "abc"},
		{name: "ascii", in: "abcdef", max: 4, want: "abc…"},
		{name: "umlauts count as one", in: "äöüß", max: 4, want: "äöüß"},
		{name: "japanese", in: "応答時間が長い", max: 4, want: "応答時…"},
		{name: "emoji", in: "🚨🚨🚨🚨🚨", max: 3, want: "🚨🚨…"},
		{name: "entity kept whole", in: "ab&amp;cd", max: 6, want: "ab…"},
		{name: "complete entity stays", in: "ab&lt;cdefgh", max: 8, want: "ab&lt;c…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cut(tt.in, tt.max)
			require.Equal(t, tt.want, got)
			require.True(t, utf8.ValidString(got))
		})
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		fail     slackfake.FailFunc
		wantErr  string
		attempts int
		minTime  time.Duration
	}{
		{
			name: "rate limit waits retry-after",
			fail: func(_ string, attempt int, w http.ResponseWriter) bool {
				if attempt > 1 {
					return false
				}
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			attempts: 2, minTime: time.Second,
		},
		{
			name: "outage backs off then succeeds",
			fail: func(_ string, attempt int, w http.ResponseWriter) bool {
				if attempt > 3 {
					return false
				}
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			},
			attempts: 4, minTime: 20*time.Millisecond + 40*time.Millisecond + 80*time.Millisecond,
		},
		{
			name: "outage gives up",
			fail: func(string, int, http.ResponseWriter) bool { return true },
			// The backoff starts at 20ms and doubles within 2s: 20+40+...+640.
			wantErr: "still failing after 7 attempts", attempts: 7,
		},
		{
			name: "refusal is final",
			fail: func(_ string, _ int, w http.ResponseWriter) bool {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"ok":false,"error":"channel_not_found"}`))
				return true
			},
			wantErr: "channel_not_found", attempts: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := slackfake.Start(t)
			f.SetFail(tt.fail)
			n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
			start := time.Now()
			err := n.Notify(context.Background(),
				notifier.Event{Kind: notifier.Opened, Incident: incident()})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, err, "slack post message of incident inc-1")
				require.Empty(t, f.Sent())
			} else {
				require.NoError(t, err)
				require.Len(t, f.Sent(), 1)
			}
			require.Equal(t, tt.attempts, f.Attempts("chat.postMessage"))
			require.GreaterOrEqual(t, time.Since(start), tt.minTime)
		})
	}
}
