package email

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/notifier"
)

// received is one message the test server accepted.
type received struct {
	From string
	To   []string
	Data []byte
	TLS  bool
	User string
}

// backend is an in-process SMTP server's store: what arrived, and who
// authenticated (or tried to).
type backend struct {
	mu    sync.Mutex
	msgs  []received
	auths []string
	conns int
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	b.conns++
	b.mu.Unlock()
	return &session{b: b, c: c}, nil
}

func (b *backend) messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	b    *backend
	c    *smtp.Conn
	user string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.b.mu.Lock()
		s.b.auths = append(s.b.auths, user)
		s.b.mu.Unlock()
		if user != "remediator" || pass != "s3cret pass" {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error  { s.to = append(s.to, to); return nil }
func (s *session) Reset()                                      { s.from, s.to = "", nil }
func (s *session) Logout() error                               { return nil }

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.msgs = append(s.b.msgs, received{From: s.from, To: s.to, Data: data, TLS: isTLS, User: s.user})
	return nil
}

// testCert makes a self-signed certificate for 127.0.0.1 and localhost and
// writes it as a CA file.
func testCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	require.NoError(t, os.WriteFile(caFile, pemBytes, 0o600))
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// serverMode is how the test server speaks.
type serverMode int

const (
	offerStartTLS serverMode = iota
	implicitTLS
	noStartTLS
)

// startServer starts an SMTP server on a free loopback port. dropFirst
// connections are closed before the server sees them, as a flaky network.
func startServer(t *testing.T, mode serverMode, cert tls.Certificate, dropFirst int) (*backend, string) {
	t.Helper()
	be := &backend{}
	srv := smtp.NewServer(be)
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var ln net.Listener = &flaky{Listener: l, drop: dropFirst}
	switch mode {
	case offerStartTLS:
		srv.TLSConfig = tc
	case implicitTLS:
		ln = tls.NewListener(ln, tc)
	case noStartTLS:
		srv.AllowInsecureAuth = true
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return be, l.Addr().String()
}

// flaky closes its first drop connections at once.
type flaky struct {
	net.Listener
	mu   sync.Mutex
	drop int
}

func (f *flaky) Accept() (net.Conn, error) {
	for {
		c, err := f.Listener.Accept()
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		drop := f.drop > 0
		f.drop--
		f.mu.Unlock()
		if !drop {
			return c, nil
		}
		_ = c.Close()
	}
}

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
	cert, caFile := testCert(t)
	tests := []struct {
		name     string
		mode     serverMode
		cfg      Config
		drop     int
		wantTLS  bool
		wantUser string
	}{
		{
			name: "starttls then auth then delivery", mode: offerStartTLS,
			cfg: Config{CAFile: caFile, Username: "remediator", PasswordEnv: "UNUSED"},
			wantTLS: true, wantUser: "remediator",
		},
		{
			name: "implicit tls", mode: implicitTLS,
			cfg:     Config{CAFile: caFile, TLS: ImplicitTLS, Username: "remediator", PasswordEnv: "UNUSED"},
			wantTLS: true, wantUser: "remediator",
		},
		{
			name: "plain only when asked", mode: noStartTLS, cfg: Config{TLS: NoTLS},
		},
		{
			name: "retried after dropped connections", mode: offerStartTLS, drop: 2,
			cfg: Config{CAFile: caFile}, wantTLS: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be, addr := startServer(t, tt.mode, cert, tt.drop)
			tt.cfg.Smarthost = addr
			s := newSender(t, tt.cfg, "s3cret pass")
			to := []string{"oncall@example.com", "Jürgen Groß <juergen@example.com>"}
			require.NoError(t, s.Send(context.Background(), to, testEvent()))

			msgs := be.messages()
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
	cert, caFile := testCert(t)
	tests := []struct {
		name    string
		mode    serverMode
		cfg     Config
		want    []string
		wantErr error
		// conns is how many connections the server saw: refusals are not
		// retried.
		conns int
	}{
		{
			name: "server without starttls", mode: noStartTLS,
			cfg:     Config{CAFile: caFile, Username: "remediator", PasswordEnv: "UNUSED"},
			want:    []string{"did not offer STARTTLS", "attempt 1 of 3"},
			wantErr: ErrNoStartTLS, conns: 1,
		},
		{
			name: "certificate not trusted", mode: offerStartTLS,
			cfg:  Config{Username: "remediator", PasswordEnv: "UNUSED"},
			want: []string{"STARTTLS", "certificate"}, conns: 1,
		},
		{
			name: "wrong password", mode: implicitTLS,
			cfg:  Config{CAFile: caFile, TLS: ImplicitTLS, Username: "remediator", PasswordEnv: "X"},
			want: []string{"authenticate", "attempt 1 of 3"}, conns: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be, addr := startServer(t, tt.mode, cert, 0)
			tt.cfg.Smarthost = addr
			pass := "s3cret pass"
			if tt.name == "wrong password" {
				pass = "wrong"
			}
			s := newSender(t, tt.cfg, pass)
			err := s.Send(context.Background(), []string{"oncall@example.com"}, testEvent())
			require.Error(t, err)
			t.Logf("error: %v", err)
			require.ErrorContains(t, err, "email via "+addr)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			require.NotContains(t, err.Error(), pass)
			require.Empty(t, be.messages(), "nothing was delivered")
			be.mu.Lock()
			defer be.mu.Unlock()
			require.Equal(t, tt.conns, be.conns)
			if tt.mode == noStartTLS {
				require.Empty(t, be.auths, "no credentials went out in clear")
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
