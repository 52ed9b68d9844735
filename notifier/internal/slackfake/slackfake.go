// Package slackfake is a Slack Web API for tests: slacktest's server with
// chat.postMessage and chat.update recording what was sent, and helpers to
// read the recorded Block Kit blocks.
package slackfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"
)

// Call is one request the fake Slack received.
type Call struct {
	Method    string
	Channel   string
	TS        string
	ThreadTS  string
	Broadcast bool
	Text      string
	Blocks    slack.Blocks
}

// Server is slacktest's server with chat.postMessage and chat.update bound
// to record what was sent.
type Server struct {
	srv   *slacktest.Server
	mu    sync.Mutex
	calls []Call
	tries map[string]int
	seq   int
	fail  FailFunc
}

// FailFunc may answer a request instead of the fake, as Slack would when
// it fails; attempt counts from 1 per method. It reports whether it
// answered.
type FailFunc func(method string, attempt int, w http.ResponseWriter) bool

// Start starts a fake Slack on a loopback port until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	f := &Server{tries: map[string]int{}}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.handler("chat.postMessage"))
		c.Handle("/chat.update", f.handler("chat.update"))
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *Server) handler(method string) http.HandlerFunc {
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
		c := Call{
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

// SetFail makes fail answer requests from now on; nil clears it.
func (f *Server) SetFail(fail FailFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

// URL is the API URL to configure.
func (f *Server) URL() string { return f.srv.GetAPIURL() }

// Sent returns the recorded calls, oldest first.
func (f *Server) Sent() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Attempts counts the requests of method, failed ones included.
func (f *Server) Attempts(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries[method]
}

// Header is the text of the message's header block; it fails the test when
// the first block is not a header.
func Header(t testing.TB, c Call) string {
	t.Helper()
	h, ok := c.Blocks.BlockSet[0].(*slack.HeaderBlock)
	require.True(t, ok, "first block is the header, got %T", c.Blocks.BlockSet[0])
	return h.Text.Text
}

// Buttons returns the action_id → value (or URL) of every button.
func Buttons(c Call) map[string]string {
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

// Text is every text of a message's blocks, one a line.
func Text(c Call) string {
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
