// Package email sends incident notifications over SMTP with go-mail: a
// multipart message with a plain-text and an HTML part in UTF-8, an RFC 2047
// subject, Date and Message-ID. Nothing from an alert reaches a header raw.
// TLS is required by default: STARTTLS, or implicit TLS on port 465; plain
// SMTP only when the config says tls: none, and never with credentials.
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/companion/remediator/notifier"
)

// ErrNoStartTLS is returned when the server does not offer STARTTLS though
// the config requires it. Nothing has been sent by then, credentials
// included.
var ErrNoStartTLS = errors.New("server did not offer STARTTLS, refusing to continue in clear")

// Sender sends notification emails through one SMTP server. It is safe for
// concurrent use; every Send opens its own connection.
type Sender struct {
	cfg      Config
	host     string
	port     int
	password string
	tls      *tls.Config
	logger   *slog.Logger
}

// New returns a sender for a validated config and its password (empty
// without a username). It reads CAFile.
func New(cfg Config, password string, logger *slog.Logger) (*Sender, error) {
	host, portText, err := net.SplitHostPort(cfg.Smarthost)
	if err != nil {
		return nil, fmt.Errorf("email smarthost %q: %w", cfg.Smarthost, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("email smarthost %q: bad port: %w", cfg.Smarthost, err)
	}
	tc := &tls.Config{ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if cfg.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read email ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read email ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return &Sender{cfg: cfg, host: host, port: port, password: password, tls: tc,
		logger: logger}, nil
}

// Send emails an event to the addresses in to, trying Attempts times with
// a doubling backoff while the failure may pass (connection refused,
// timeouts, 4xx answers). Refusals (5xx, no STARTTLS, a certificate that
// does not verify) are not retried. The error names the server and the
// stage that failed.
func (s *Sender) Send(ctx context.Context, to []string, ev notifier.Event) error {
	msg, err := s.compose(to, ev)
	if err != nil {
		return err
	}
	wait := s.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		err = s.deliver(ctx, msg)
		if err == nil {
			s.logger.InfoContext(ctx, "email_sent", "incident", ev.Incident.ID,
				"event", string(ev.Kind), "recipients", len(to))
			return nil
		}
		if !temporary(err) || attempt >= s.cfg.Attempts || ctx.Err() != nil {
			return fmt.Errorf("email via %s (attempt %d of %d): %w",
				s.cfg.Smarthost, attempt, s.cfg.Attempts, err)
		}
		s.logger.WarnContext(ctx, "email_retry", "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("email via %s: %w", s.cfg.Smarthost, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// deliver makes one attempt: connect, TLS, AUTH, then the message.
func (s *Sender) deliver(ctx context.Context, msg *mail.Msg) error {
	client, err := mail.NewClient(s.host, s.options()...)
	if err != nil {
		return fmt.Errorf("set up smtp client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	conn, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		if strings.Contains(err.Error(), "does not support STARTTLS") {
			return ErrNoStartTLS
		}
		return fmt.Errorf("connect, %s and authenticate: %w", s.tlsStage(), err)
	}
	defer func() { _ = client.CloseWithSMTPClient(conn) }()
	if err := client.SendWithSMTPClient(conn, msg); err != nil {
		return fmt.Errorf("deliver message: %w", err)
	}
	return nil
}

func (s *Sender) tlsStage() string {
	switch s.cfg.TLS {
	case ImplicitTLS:
		return "TLS handshake"
	case StartTLS:
		return "STARTTLS"
	default:
		return "no TLS (tls: none)"
	}
}

func (s *Sender) options() []mail.Option {
	opts := []mail.Option{
		mail.WithPort(s.port), mail.WithTimeout(s.cfg.Timeout), mail.WithTLSConfig(s.tls),
	}
	if s.cfg.Hello != "" {
		opts = append(opts, mail.WithHELO(s.cfg.Hello))
	}
	switch s.cfg.TLS {
	case ImplicitTLS:
		opts = append(opts, mail.WithSSL())
	case StartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	// Validate keeps credentials away from tls: none; this is the second
	// lock on that door.
	if s.cfg.Username != "" && s.cfg.TLS != NoTLS {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(s.cfg.Username), mail.WithPassword(s.password))
	}
	return opts
}

// temporary reports whether another attempt may succeed.
func temporary(err error) bool {
	var proto *textproto.Error
	var send *mail.SendError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.Is(err, ErrNoStartTLS),
		errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &invalid),
		errors.As(err, &verify):
		return false
	case errors.As(err, &proto):
		return proto.Code < 500
	case errors.As(err, &send):
		return send.IsTemp()
	default:
		return true
	}
}
