package remediator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConfigReportsEveryErrorWithLine puts decoding and validation errors in
// one file: all are reported together, each with its line.
func TestConfigReportsEveryErrorWithLine(t *testing.T) {
	t.Setenv(EnvWebhookToken, "")
	path := filepath.Join(t.TempDir(), "bad.yml")
	require.NoError(t, os.WriteFile(path, []byte(`listen: not-an-address
namespaces: [Default]
playbook: typo
queue:
  workers: -1
prometheus:
  url: "not a url"
maintenance:
  - name: upgrade
    start: tomorrow
    end: 2026-12-24T22:00:00Z
webhook:
  max_body_bytes: 10
`), 0o600))
	_, err := LoadConfig(path)
	require.Error(t, err)
	for _, want := range []string{
		"line 3: unknown field playbook",
		`line 10: "tomorrow" is not an RFC 3339 time`,
		`line 1: listen "not-an-address" is not a host:port address`,
		`line 7: prometheus.url "not a url" is not an http or https URL`,
		`line 2: namespaces: "Default" is not a valid namespace`,
		"line 13: webhook.max_body_bytes must be at least 1024, got 10",
		"line 4: queue: size and workers must be at least 1",
	} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), "remediator.Config")
}

func TestVerifyQueryNeedsPrometheus(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "q.playbook.yml"), []byte(`version: 1
name: q
match: {alertname: A}
target: {kind: Deployment, namespace: default, name: x}
steps:
  - action: restart
  - action: verify
    query: sum(rate(errors[5m]))
    below: 0.1
`), 0o600))
	cfg := filepath.Join(dir, "remediator.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("playbooks: ['*.playbook.yml']\nnamespaces: [default]\n"), 0o600))
	_, _, err := Check(cfg)
	require.ErrorContains(t, err, "q.playbook.yml:7: step verify queries Prometheus, but the configuration has no prometheus.url")

	require.NoError(t, os.WriteFile(cfg, []byte("playbooks: ['*.playbook.yml']\nnamespaces: [default]\n"+
		"prometheus: {url: 'http://127.0.0.1:9090'}\n"), 0o600))
	_, _, err = Check(cfg)
	require.NoError(t, err)
}

func TestEnvTokenAndBasicAuthExclude(t *testing.T) {
	t.Setenv(EnvWebhookToken, "tok")
	t.Setenv(EnvWebhookPassword, "pw")
	path := filepath.Join(t.TempDir(), "c.yml")
	require.NoError(t, os.WriteFile(path, []byte("namespaces: [default]\nwebhook:\n  basic_auth: {username: am}\n"), 0o600))
	_, err := LoadConfig(path)
	require.ErrorContains(t, err, "REMEDIATOR_WEBHOOK_TOKEN is set and webhook.basic_auth is configured")
	require.True(t, strings.Contains(err.Error(), "line 2: REMEDIATOR_WEBHOOK_TOKEN"), err.Error())
}

func TestCheckCrossReferences(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.playbook.yml"), []byte(`version: 1
name: c
match: {alertname: A}
target: {kind: Deployment, namespace: default, name: x}
escalation: nosuchchain
steps: [{action: restart}]
`), 0o600))
	cfg := filepath.Join(dir, "remediator.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("playbooks: ['*.playbook.yml']\nnamespaces: [default]\n"), 0o600))
	_, _, err := Check(cfg)
	require.ErrorContains(t, err, `c.playbook.yml:1: escalation chain "nosuchchain" is not defined`)
}

func TestCheckReadsNotificationSecrets(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.playbook.yml"), []byte(`version: 1
name: a
match: {alertname: A}
target: {kind: Deployment, namespace: default, name: x}
steps: [{action: restart}]
`), 0o600))
	cfg := filepath.Join(dir, "remediator.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("playbooks: ['*.playbook.yml']\nnamespaces: [default]\n"+
		"notify:\n  email:\n    smarthost: 127.0.0.1:2525\n    from: remediator@example.com\n"+
		"    username: bot\n    password_file: "+filepath.Join(dir, "missing")+"\n"), 0o600))
	_, _, err := Check(cfg)
	require.ErrorContains(t, err, "notifications:")
	require.ErrorContains(t, err, "missing")
}
