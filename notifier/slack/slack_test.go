package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/remediator/state"
)

// call is one request the fake Slack received.
type call struct {
	Method    string
	Channel   string
	TS        string
	ThreadTS  string
	Broadcast bool
	Text      string
	Blocks    slack.Blocks
}

// fakeSlack is slacktest's server with chat.postMessage and chat.update
// bound to record what was sent. fail, when set, may answer a request
// instead (the attempt counts from 1 per method).
type fakeSlack struct {
	srv   *slacktest.Server
	mu    sync.Mutex
	calls []call
	tries map[string]int
	seq   int
	fail  func(method string, attempt int, w http.ResponseWriter) bool
}

func newFakeSlack(t *testing.T) *fakeSlack {
	t.Helper()
	f := &fakeSlack{tries: map[string]int{}}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.handler("chat.postMessage"))
		c.Handle("/chat.update", f.handler("chat.update"))
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeSlack) handler(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v, _ := url.ParseQuery(string(body))
		f.mu.Lock()
		f.tries[method]++
		attempt, fail := f.tries[method], f.fail
		f.mu.Unlock()
		if fail != nil && fail(method, attempt, w) {
			return
		}
		c := call{
			Method: method, Channel: v.Get("channel"), TS: v.Get("ts"),
			ThreadTS: v.Get("thread_ts"), Broadcast: v.Get("reply_broadcast") == "true",
			Text: v.Get("text"),
		}
		if err := json.Unmarshal([]byte(v.Get("blocks")), &c.Blocks); err != nil {
			http.Error(w, "bad blocks: "+err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		if method == "chat.postMessage" {
			f.seq++
			c.TS = fmt.Sprintf("1764860000.%06d", f.seq)
		}
		f.calls = append(f.calls, c)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ok": true, "channel": "C0INCIDENTS", "ts": c.TS,
		})
	}
}

func (f *fakeSlack) sent() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeSlack) attempts(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries[method]
}

func testConfig(f *fakeSlack) Config {
	c := Config{TokenEnv: "X", Channel: "#incidents", APIURL: f.srv.GetAPIURL(),
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

func headerText(t *testing.T, c call) string {
	t.Helper()
	h, ok := c.Blocks.BlockSet[0].(*slack.HeaderBlock)
	require.True(t, ok, "first block is the header, got %T", c.Blocks.BlockSet[0])
	return h.Text.Text
}

// buttons returns the action_id → value (or URL) of every button.
func buttons(c call) map[string]string {
	out := map[string]string{}
	for _, b := range c.Blocks.BlockSet {
		a, ok := b.(*slack.ActionBlock)
		if !ok {
			continue
		}
		for _, el := range a.Elements.ElementSet {
			if btn, ok := el.(*slack.ButtonBlockElement); ok {
				out[btn.ActionID] = btn.Value + btn.URL
			}
		}
	}
	return out
}

// allText is every text of a message's blocks, joined.
func allText(c call) string {
	var parts []string
	for _, b := range c.Blocks.BlockSet {
		switch b := b.(type) {
		case *slack.HeaderBlock:
			parts = append(parts, b.Text.Text)
		case *slack.SectionBlock:
			if b.Text != nil {
				parts = append(parts, b.Text.Text)
			}
			for _, f := range b.Fields {
				parts = append(parts, f.Text)
			}
		case *slack.ContextBlock:
			for _, el := range b.ContextElements.Elements {
				if tx, ok := el.(*slack.TextBlockObject); ok {
					parts = append(parts, tx.Text)
				}
			}
		}
	}
	return strings.Join(parts, "\n")
}

func TestOneThreadPerIncident(t *testing.T) {
	f := newFakeSlack(t)
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

	calls := f.sent()
	require.Len(t, calls, 5, "head, reply+update, reply+update")
	head := calls[0]
	require.Equal(t, "chat.postMessage", head.Method)
	require.Equal(t, "#incidents", head.Channel)
	require.Empty(t, head.ThreadTS)
	require.Contains(t, headerText(t, head), "HighErrorRate: remediating")
	text := allText(head)
	for _, want := range []string{"*Severity*\ncritical", "*Target*\ndeployment shop/checkout",
		"*Playbook*\nhigh-error-rate", "5xx ratio above 5%", "Incident inc-1"} {
		require.Contains(t, text, want)
	}
	require.Equal(t, map[string]string{
		"remediator_ack":          "ack:inc-1",
		"remediator_alertmanager": inc.ExternalURL,
		"remediator_source":       inc.GeneratorURL,
	}, buttons(head))

	reply, update := calls[1], calls[2]
	require.Equal(t, "chat.postMessage", reply.Method)
	require.Equal(t, head.TS, reply.ThreadTS, "the step goes into the thread")
	require.Contains(t, allText(reply), "`restart` (restart): *ok* rolled out 3/3")
	require.Equal(t, "chat.update", update.Method)
	require.Equal(t, head.TS, update.TS)
	require.Equal(t, "C0INCIDENTS", update.Channel, "updates use the channel ID Slack returned")
	require.Contains(t, allText(update), "*Steps*\n• `restart`")

	final := calls[4]
	require.Equal(t, "chat.update", final.Method)
	require.Contains(t, headerText(t, final), "resolved")
	require.NotContains(t, buttons(final), "remediator_ack", "nothing to acknowledge any more")
	require.Equal(t, head.TS, calls[3].ThreadTS)
}

func TestApprovalButtons(t *testing.T) {
	f := newFakeSlack(t)
	n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
	inc := incident()
	inc.NeedsApproval = true
	ctx := context.Background()

	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.NeedsApproval, Incident: inc,
		Text: "scale to 6 replicas"}))

	calls := f.sent()
	require.Len(t, calls, 3)
	want := map[string]string{"remediator_approve": "approve:inc-1", "remediator_deny": "deny:inc-1"}
	for _, c := range calls {
		got := buttons(c)
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
	f := newFakeSlack(t)
	store := state.NewMemory()
	ctx := context.Background()
	inc := incident()
	first := New(testConfig(f), "xoxb-test", store, quiet())
	require.NoError(t, first.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))

	second := New(testConfig(f), "xoxb-test", store, quiet())
	require.NoError(t, second.Notify(ctx, notifier.Event{Kind: notifier.Failed, Incident: inc,
		Text: "rollout did not finish"}))

	calls := f.sent()
	require.Len(t, calls, 3)
	require.Equal(t, calls[0].TS, calls[1].ThreadTS)
	require.Equal(t, calls[0].TS, calls[2].TS)
	require.Contains(t, headerText(t, calls[2]), "needs a human")
}

func TestPageMentionsAndBroadcasts(t *testing.T) {
	f := newFakeSlack(t)
	n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
	ctx := context.Background()
	inc := incident()
	require.NoError(t, n.Notify(ctx, notifier.Event{Kind: notifier.Opened, Incident: inc}))
	require.NoError(t, n.Page(ctx, notifier.Event{Kind: notifier.Escalate, Incident: inc,
		Text: "Escalation step 2 of 3 (chain p1): engineering"},
		[]string{"<@U0ALICE>", "<!subteam^S0ENG>"}))

	calls := f.sent()
	require.Len(t, calls, 3)
	page := calls[1]
	require.True(t, page.Broadcast)
	require.Equal(t, calls[0].TS, page.ThreadTS)
	require.Contains(t, allText(page), "<@U0ALICE> <!subteam^S0ENG> please acknowledge")
	require.Equal(t, "ack:inc-1", buttons(page)["remediator_ack"])
	require.Contains(t, allText(calls[2]), "*Escalation*\nEscalation step 2 of 3")
}

func TestPageWithoutHeadPostsHeadFirst(t *testing.T) {
	f := newFakeSlack(t)
	n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
	require.NoError(t, n.Page(context.Background(), notifier.Event{Kind: notifier.Escalate,
		Incident: incident(), Text: "step 1"}, []string{"<!here>"}))
	calls := f.sent()
	require.Len(t, calls, 2, "the head, then the page in its thread")
	require.Empty(t, calls[0].ThreadTS)
	require.Equal(t, calls[0].TS, calls[1].ThreadTS)
}

func TestLongAndForeignTextIsCut(t *testing.T) {
	f := newFakeSlack(t)
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

	calls := f.sent()
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
	text := allText(calls[0])
	require.NotContains(t, text, "<!channel>", "alert text cannot mention the channel")
	require.Contains(t, text, "&lt;!channel&gt;")
	require.Contains(t, text, "Zähler überläuft\r\nin der Warteschlange 🚨")
	require.Contains(t, text, "応答時間が長すぎます😱")
	require.Contains(t, text, "…")
	reply := allText(calls[1])
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
		fail     func(method string, attempt int, w http.ResponseWriter) bool
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
			f := newFakeSlack(t)
			f.fail = tt.fail
			n := New(testConfig(f), "xoxb-test", state.NewMemory(), quiet())
			start := time.Now()
			err := n.Notify(context.Background(),
				notifier.Event{Kind: notifier.Opened, Incident: incident()})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, err, "slack post message of incident inc-1")
				require.Empty(t, f.sent())
			} else {
				require.NoError(t, err)
				require.Len(t, f.sent(), 1)
			}
			require.Equal(t, tt.attempts, f.attempts("chat.postMessage"))
			require.GreaterOrEqual(t, time.Since(start), tt.minTime)
		})
	}
}
