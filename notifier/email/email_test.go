package email

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/notifier/internal/smtpfake"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testEvent() notifier.Event {
	return notifier.Event{
		Kind: notifier.Escalate,
		Text: "Escalation step 2 of 3 (chain p1): engineering",
		At:   time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC),
		Incident: notifier.Incident{
			ID:        "inc-42",
			AlertName: "Fehlerquote_Größe_応答🚨\r\nBcc: evil@example.com",
			Severity:  "critical",
			Target:    "deployment shop/checkout",
			Playbook:  "high-error-rate",
			Summary:   "Fehlerquote über 5 % – Größe überschritten\r\nzweite Zeile",
			Annotations: map[string]string{
				"description": "応答時間が長すぎます 🚨🔥 " + strings.Repeat("長い説明 ", 300),
				"runbook":     "line one\r\nX-Injected: yes\r\n",
			},
			Labels:       map[string]string{"alertname": "HighErrorRate", "namespace": "shop"},
			ExternalURL:  "http://alertmanager.local:9093",
			GeneratorURL: "http://prometheus.local:9090/graph",
		},
	}
}

func newSender(t *testing.T, cfg Config, password string) *Sender {
	t.Helper()
	cfg.From = "Remediator <remediator@example.com>"
	cfg.Timeout = 3 * time.Second
	cfg.RetryBackoff = 20 * time.Millisecond
	cfg.ApplyDefaults()
	require.NoError(t, cfg.Validate())
	s, err := New(cfg, password, quiet())
	require.NoError(t, err)
	return s
}

func TestSend(t *testing.T) {
	tests := []struct {
		name     string
		mode     smtpfake.Mode
		cfg      Config
		drop     int
		wantTLS  bool
		wantUser string
	}{
		{
			name: "starttls then auth then delivery", mode: smtpfake.OfferStartTLS,
			cfg:     Config{Username: smtpfake.Username, PasswordEnv: "UNUSED"},
			wantTLS: true, wantUser: smtpfake.Username,
		},
		{
			name: "implicit tls", mode: smtpfake.ImplicitTLS,
			cfg:     Config{TLS: ImplicitTLS, Username: smtpfake.Username, PasswordEnv: "UNUSED"},
			wantTLS: true, wantUser: smtpfake.Username,
		},
		{
			name: "plain only when asked", mode: smtpfake.NoStartTLS, cfg: Config{TLS: NoTLS},
		},
		{
			name: "retried after dropped connections", mode: smtpfake.OfferStartTLS, drop: 2,
			cfg: Config{}, wantTLS: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtpfake.Start(t, tt.mode, tt.drop)
			tt.cfg.Smarthost, tt.cfg.CAFile = srv.Addr, srv.CAFile
			s := newSender(t, tt.cfg, smtpfake.Password)
			to := []string{"oncall@example.com", "Jürgen Groß <juergen@example.com>"}
			require.NoError(t, s.Send(context.Background(), to, testEvent()))

			msgs := srv.Messages()
			require.Len(t, msgs, 1)
			require.Equal(t, tt.wantTLS, msgs[0].TLS)
			require.Equal(t, tt.wantUser, msgs[0].User)
			require.Equal(t, "remediator@example.com", msgs[0].From)
			require.ElementsMatch(t, []string{"oncall@example.com", "juergen@example.com"}, msgs[0].To)
			checkMessage(t, msgs[0].Data)
		})
	}
}

// checkMessage parses a delivered message and checks its headers, encoding
// and both parts.
func checkMessage(t *testing.T, data []byte) {
	t.Helper()
	for _, line := range strings.Split(string(data), "\r\n") {
		require.LessOrEqual(t, len(line), 998, "no line beyond RFC 5322's limit")
	}
	head := string(data[:bytes.Index(data, []byte("\r\n\r\n"))])
	for _, line := range strings.Split(head, "\r\n") {
		require.LessOrEqual(t, len(line), 78, "header lines are folded: %q", line)
		require.NotRegexp(t, `^(Bcc|X-Injected):`, line, "alert text made a header")
	}

	msg, err := mail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	require.Empty(t, msg.Header.Get("Bcc"))
	require.Empty(t, msg.Header.Get("X-Injected"))
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "[critical] Fehlerquote_Größe_応答🚨 Bcc: evil@example.com on deployment shop/checkout: "+
		"Escalation step 2 of 3 (chain p1): engineering", subj)
	require.Contains(t, msg.Header.Get("Subject"), "=?UTF-8?", "subject is an encoded word")
	date, err := msg.Header.Date()
	require.NoError(t, err)
	require.True(t, date.Equal(testEvent().At))
	require.Regexp(t, `^<[^<>@\s]+@[^<>@\s]+>$`, msg.Header.Get("Message-Id"))
	require.Equal(t, "auto-generated", msg.Header.Get("Auto-Submitted"))
	to, err := msg.Header.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, "Jürgen Groß", to[1].Name)

	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mediaType)
	parts := map[string]string{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		ct, cp, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		require.NoError(t, err)
		require.Equal(t, "utf-8", strings.ToLower(cp["charset"]))
		require.Equal(t, "quoted-printable", p.Header.Get("Content-Transfer-Encoding"))
		body, err := io.ReadAll(quotedprintable.NewReader(p))
		require.NoError(t, err)
		parts[ct] = string(body)
	}
	require.Len(t, parts, 2)
	text, html := parts["text/plain"], parts["text/html"]
	for _, want := range []string{
		"Escalation step 2 of 3 (chain p1): engineering",
		"Fehlerquote über 5 % – Größe überschritten\r\nzweite Zeile",
		"応答時間が長すぎます 🚨🔥",
		"runbook: line one\r\nX-Injected: yes",
		"Alertmanager: http://alertmanager.local:9093",
		"POST /api/v1/incidents/inc-42/ack",
	} {
		require.Contains(t, text, want)
	}
	require.Contains(t, html, "Fehlerquote_Größe_応答🚨 Bcc: evil@example.com on deployment shop/checkout")
	require.Contains(t, html, "応答時間が長すぎます 🚨🔥")
	require.Contains(t, html, `<a href="http://alertmanager.local:9093">Alertmanager</a>`)
}

func TestSendRefuses(t *testing.T) {
	tests := []struct {
		name    string
		mode    smtpfake.Mode
		cfg     Config
		want    []string
		wantErr error
		// conns is how many connections the server saw: refusals are not
		// retried.
		conns     int
		untrusted bool
	}{
		{
			name: "server without starttls", mode: smtpfake.NoStartTLS,
			cfg:     Config{Username: smtpfake.Username, PasswordEnv: "UNUSED"},
			want:    []string{"did not offer STARTTLS", "attempt 1 of 3"},
			wantErr: ErrNoStartTLS, conns: 1,
		},
		{
			name: "certificate not trusted", mode: smtpfake.OfferStartTLS, untrusted: true,
			cfg:  Config{Username: smtpfake.Username, PasswordEnv: "UNUSED"},
			want: []string{"STARTTLS", "certificate"}, conns: 1,
		},
		{
			name: "wrong password", mode: smtpfake.ImplicitTLS,
			cfg:  Config{TLS: ImplicitTLS, Username: smtpfake.Username, PasswordEnv: "X"},
			want: []string{"authenticate", "attempt 1 of 3"}, conns: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtpfake.Start(t, tt.mode, 0)
			tt.cfg.Smarthost = srv.Addr
			if !tt.untrusted {
				tt.cfg.CAFile = srv.CAFile
			}
			pass := smtpfake.Password
			if tt.name == "wrong password" {
				pass = "wrong"
			}
			s := newSender(t, tt.cfg, pass)
			err := s.Send(context.Background(), []string{"oncall@example.com"}, testEvent())
			require.Error(t, err)
			t.Logf("error: %v", err)
			require.ErrorContains(t, err, "email via "+srv.Addr)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			require.NotContains(t, err.Error(), pass)
			require.Empty(t, srv.Messages(), "nothing was delivered")
			require.Equal(t, tt.conns, srv.Conns())
			if tt.mode == smtpfake.NoStartTLS {
				require.Empty(t, srv.Auths(), "no credentials went out in clear")
			}
		})
	}
}

func TestSendServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	s := newSender(t, Config{Smarthost: addr}, "")
	start := time.Now()
	err = s.Send(context.Background(), []string{"oncall@example.com"}, testEvent())
	require.ErrorContains(t, err, "email via "+addr+" (attempt 3 of 3)")
	require.ErrorContains(t, err, "connect")
	require.ErrorContains(t, err, "refused")
	require.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond, "backoff 20ms then 40ms")
}

func TestHeaderSafe(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{name: "crlf becomes space", in: "a\r\nBcc: x", max: 50, want: "a Bcc: x"},
		{name: "other controls too", in: "a\tb\x00c\u2028d", max: 50, want: "a b c d"},
		{name: "cut on a character", in: "Größenüberschreitung", max: 5, want: "Größ…"},
		{name: "emoji whole", in: "🚨🚨🚨", max: 2, want: "🚨…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, headerSafe(tt.in, tt.max))
		})
	}
}
