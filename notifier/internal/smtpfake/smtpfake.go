// Package smtpfake is a real SMTP server for tests, in-process on a
// loopback port: go-smtp with a certificate generated for the test,
// STARTTLS, implicit TLS or neither, AUTH PLAIN, and a record of what
// arrived.
package smtpfake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// The only credentials the server accepts.
const (
	Username = "remediator"
	Password = "s3cret pass"
)

// Mode is how the server speaks.
type Mode int

// Modes of Start.
const (
	// OfferStartTLS advertises STARTTLS on a clear connection.
	OfferStartTLS Mode = iota
	// ImplicitTLS speaks TLS from the first byte.
	ImplicitTLS
	// NoStartTLS offers no TLS at all, and AUTH in clear.
	NoStartTLS
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	// TLS reports whether the connection was encrypted at DATA.
	TLS bool
	// User is who authenticated, if anyone.
	User string
}

// Server is a running test server.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// CAFile is a PEM file that makes clients trust the server.
	CAFile string

	mu    sync.Mutex
	msgs  []Message
	auths []string
	conns int
}

// Messages returns what arrived, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Auths lists the user names of every AUTH attempt.
func (s *Server) Auths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

// Conns counts the SMTP sessions that began.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	return &session{srv: s, c: c}, nil
}

type session struct {
	srv  *Server
	c    *smtp.Conn
	user string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.srv.mu.Lock()
		s.srv.auths = append(s.srv.auths, user)
		s.srv.mu.Unlock()
		if user != Username || pass != Password {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.msgs = append(s.srv.msgs, Message{From: s.from, To: s.to, Data: data, TLS: isTLS,
		User: s.user})
	return nil
}

// Start starts a server in mode on a free loopback port until the test
// ends. Its first dropFirst connections are closed at once, as by a flaky
// network.
func Start(t testing.TB, mode Mode, dropFirst int) *Server {
	t.Helper()
	cert, caFile := testCert(t)
	s := &Server{CAFile: caFile}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.Addr = l.Addr().String()
	var ln net.Listener = &flaky{Listener: l, drop: dropFirst}
	switch mode {
	case OfferStartTLS:
		srv.TLSConfig = tc
	case ImplicitTLS:
		ln = tls.NewListener(ln, tc)
	case NoStartTLS:
		srv.AllowInsecureAuth = true
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// testCert makes a self-signed certificate for 127.0.0.1 and localhost and
// writes it as a CA file.
func testCert(t testing.TB) (tls.Certificate, string) {
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
