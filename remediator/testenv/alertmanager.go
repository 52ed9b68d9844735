package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// AlertmanagerOptions configures StartAlertmanager: one route to one
// webhook receiver.
type AlertmanagerOptions struct {
	// WebhookURL is where Alertmanager posts notifications; required.
	WebhookURL string
	// BearerToken, when set, is sent as "Authorization: Bearer <token>".
	BearerToken string
	// BasicAuthUser and BasicAuthPassword, when the user is set, are sent
	// as HTTP basic auth. Set either a bearer token or basic auth.
	BasicAuthUser     string
	BasicAuthPassword string
	// GroupBy defaults to ["alertname"].
	GroupBy []string
	// GroupWait defaults to 100ms.
	GroupWait time.Duration
	// GroupInterval defaults to 500ms.
	GroupInterval time.Duration
	// RepeatInterval defaults to one hour, so a test sees one notification
	// per group change rather than a stream of repeats.
	RepeatInterval time.Duration
	// DropResolved stops notifications for resolved alerts; the zero
	// value sends them (send_resolved: true).
	DropResolved bool
}

// Alertmanager is a running Alertmanager started by StartAlertmanager.
type Alertmanager struct {
	// URL is the server's base URL, such as http://127.0.0.1:41235.
	URL string
	// ConfigFile is the path of the alertmanager.yml it runs with.
	ConfigFile string
	// Process is the running program.
	Process *Process
}

// StartAlertmanager writes a configuration from opts into a temporary
// directory and starts Alertmanager on a free loopback port with gossip
// turned off and its storage in that directory, then waits until it is
// ready. It fails the test, with a hint to run `make deps`, when Debian's
// prometheus-alertmanager is not installed.
func StartAlertmanager(t testing.TB, opts AlertmanagerOptions) *Alertmanager {
	t.Helper()
	if opts.WebhookURL == "" {
		t.Fatalf("start alertmanager: WebhookURL is required")
	}
	dir := t.TempDir()
	cfgPath := WriteFile(t, dir, "alertmanager.yml", alertmanagerConfig(opts))

	port := FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := Start(t, dir, alertmanagerBinary(),
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--web.external-url="+base,
		"--cluster.listen-address=",
		"--log.level=warn",
	)
	WaitHTTP(t, p, base+"/-/ready", 30*time.Second)
	return &Alertmanager{URL: base, ConfigFile: cfgPath, Process: p}
}

// alertmanagerBinary picks Debian's name for the program, or the upstream
// name when that is the one installed.
func alertmanagerBinary() string {
	if _, err := exec.LookPath("prometheus-alertmanager"); err == nil {
		return "prometheus-alertmanager"
	}
	if _, err := exec.LookPath("alertmanager"); err == nil {
		return "alertmanager"
	}
	return "prometheus-alertmanager"
}

func alertmanagerConfig(opts AlertmanagerOptions) string {
	groupBy := opts.GroupBy
	if len(groupBy) == 0 {
		groupBy = []string{"alertname"}
	}
	quoted := make([]string, len(groupBy))
	for i, g := range groupBy {
		quoted[i] = quote(g)
	}

	var b strings.Builder
	b.WriteString("route:\n  receiver: webhook\n")
	fmt.Fprintf(&b, "  group_by: [%s]\n", strings.Join(quoted, ", "))
	fmt.Fprintf(&b, "  group_wait: %s\n",
		promDuration(orDefault(opts.GroupWait, 100*time.Millisecond)))
	fmt.Fprintf(&b, "  group_interval: %s\n",
		promDuration(orDefault(opts.GroupInterval, 500*time.Millisecond)))
	fmt.Fprintf(&b, "  repeat_interval: %s\n", promDuration(orDefault(opts.RepeatInterval, time.Hour)))

	b.WriteString("receivers:\n  - name: webhook\n    webhook_configs:\n")
	fmt.Fprintf(&b, "      - url: %s\n", quote(opts.WebhookURL))
	fmt.Fprintf(&b, "        send_resolved: %t\n", !opts.DropResolved)
	switch {
	case opts.BearerToken != "":
		b.WriteString("        http_config:\n          authorization:\n")
		fmt.Fprintf(&b, "            type: Bearer\n            credentials: %s\n",
			quote(opts.BearerToken))
	case opts.BasicAuthUser != "":
		b.WriteString("        http_config:\n          basic_auth:\n")
		fmt.Fprintf(&b, "            username: %s\n            password: %s\n",
			quote(opts.BasicAuthUser), quote(opts.BasicAuthPassword))
	}
	return b.String()
}

// AddSilence adds a silence through amtool for the given matchers (such as
// `alertname="HighErrorRate"`) lasting d, and returns its id.
func (a *Alertmanager) AddSilence(
	t testing.TB,
	d time.Duration,
	comment string,
	matchers ...string,
) string {
	t.Helper()
	if len(matchers) == 0 {
		t.Fatalf("add silence: at least one matcher is required")
	}
	path, err := exec.LookPath("amtool")
	if err != nil {
		t.Fatalf("amtool is not installed (run `make deps`): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	args := []string{
		"silence", "add",
		"--alertmanager.url=" + a.URL,
		"--author=testenv",
		"--comment=" + comment,
		"--duration=" + promDuration(d),
	}
	args = append(args, matchers...)
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool silence add %v: %v\n%s", matchers, err, out)
	}
	return strings.TrimSpace(string(out))
}

// ExpireSilence expires the silence with the given id through amtool.
func (a *Alertmanager) ExpireSilence(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "amtool", "silence", "expire",
		"--alertmanager.url="+a.URL, id).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool silence expire %s: %v\n%s", id, err, out)
	}
}
