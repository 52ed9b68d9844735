package dispatch

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/companion/remediator/notifier/email"
	"github.com/companion/remediator/notifier/escalation"
)

// file is the part of the remediator's config file this package owns.
type file struct {
	Notify Config `yaml:"notify"`
}

func decode(t *testing.T, src []byte) (Config, error) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var f file
	err := dec.Decode(&f)
	return f.Notify, err
}

func TestConfigDecodesWithDefaults(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "notify.yml"))
	require.NoError(t, err)
	cfg, err := decode(t, src)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	require.Equal(t, email.ImplicitTLS, cfg.Email.TLS, "port 465 means implicit TLS")
	require.Equal(t, email.DefaultAttempts, cfg.Email.Attempts)
	require.Equal(t, 10*time.Second, cfg.Slack.Timeout)
	require.Equal(t, 30*time.Minute, cfg.Escalation.Chains["checkout"].Steps[1].After)
	require.Equal(t, escalation.Always, cfg.Escalation.Chains["checkout"].Steps[0].When)
	require.Contains(t, cfg.Escalation.Chains, "p0", "default chains stay beside the new one")
	require.Equal(t, "checkout", cfg.Escalation.Severities["page"])
	require.Equal(t, "p0", cfg.Escalation.Severities["critical"])
	require.Equal(t, []string{"S0OPS"}, cfg.Escalation.Teams["operations"].Slack)
	require.Contains(t, cfg.Escalation.Teams, "manager")
	require.Equal(t, DefaultQueueSize, cfg.QueueSize)
}

func TestConfigAbsentGetsDefaults(t *testing.T) {
	cfg, err := decode(t, []byte("{}\n"))
	require.NoError(t, err)
	cfg.ApplyDefaults()
	require.NoError(t, cfg.Validate())
	require.Nil(t, cfg.Slack)
	require.Nil(t, cfg.Email)
	require.Len(t, cfg.Escalation.Chains["p1"].Steps, 3)
	require.Equal(t, DefaultConfig(), cfg)
}

func TestConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "unknown field",
			yaml: "notify:\n  slack:\n    chanel: C1\n",
			want: []string{"field chanel not found"},
		},
		{
			name: "unknown field in a chain step",
			yaml: "notify:\n  escalation:\n    chains:\n      x:\n        steps:\n          - afterr: 1h\n",
			want: []string{"field afterr not found"},
		},
		{
			name: "every problem at once",
			yaml: `notify:
  slack:
    token_file: /a
    token_env: B
  email:
    smarthost: mail.example.com
    from: "not an address"
    tls: none
    username: u
    password_env: P
  escalation:
    timezone: Mars/Olympus
    business_days: [mon, funday]
    quiet_hours: {start: "25:00", end: "07:00"}
    teams:
      ops:
        slack: ["#ops"]
        email: ["nobody"]
    chains:
      broken:
        steps:
          - after: 2h
            notify: [ghosts]
            when: sometimes
          - after: 1h
      empty: {}
    severities:
      critical: missing
    default_chain: nope
`,
			want: []string{
				"notify.slack: exactly one of token_file and token_env",
				"notify.slack: channel must be set",
				`notify.email: smarthost "mail.example.com": must be host:port`,
				`notify.email: from "not an address"`,
				"notify.email: tls none: credentials are never sent without TLS",
				`notify.escalation: timezone "Mars/Olympus"`,
				`notify.escalation: business_days: "funday"`,
				"notify.escalation: quiet_hours.start",
				"notify.escalation: teams.ops.slack",
				`notify.escalation: teams.ops.email "nobody"`,
				`notify.escalation: chains.broken.steps[0].notify: unknown team "ghosts"`,
				`notify.escalation: chains.broken.steps[0].when "sometimes"`,
				"notify.escalation: chains.broken.steps[1].after 1h0m0s: comes before",
				"notify.escalation: chains.empty: has no steps",
				`notify.escalation: severities.critical: unknown chain "missing"`,
				`notify.escalation: default_chain: unknown chain "nope"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := decode(t, []byte(tt.yaml))
			if err == nil {
				err = cfg.Validate()
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
