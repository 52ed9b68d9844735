package rules

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// promtool runs promtool with args in this directory and returns its
// output; it fails the test when promtool is missing or fails.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool is not installed: run `make deps` (Debian package prometheus)")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	require.NoError(t, err)
	require.NotEmpty(t, files, "no files match %s", pattern)
	return files
}

func TestPromtoolCheckRules(t *testing.T) {
	out := promtool(t, append([]string{"check", "rules"}, glob(t, "*.rules.yml")...)...)
	require.Contains(t, out, "SUCCESS")
}

func TestPromtoolTestRules(t *testing.T) {
	tests := glob(t, filepath.Join("tests", "*.test.yml"))
	out := promtool(t, append([]string{"test", "rules"}, tests...)...)
	require.Equal(t, len(tests), strings.Count(out, "SUCCESS"), out)
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlerts(t *testing.T) map[string]rule {
	t.Helper()
	alerts := map[string]rule{}
	for _, f := range glob(t, "*.rules.yml") {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var rf ruleFile
		require.NoError(t, yaml.Unmarshal(b, &rf), f)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					require.NotContains(t, alerts, r.Alert, "alert %s defined twice", r.Alert)
					alerts[r.Alert] = r
				}
			}
		}
	}
	return alerts
}

// byClause matches "by (a, b)" aggregations in an expression.
var byClause = regexp.MustCompile(`by \(([^)]*)\)`)

// TestLabelContract checks what the playbooks rely on: each alert's
// service, severity, for and annotations, and that its expression keeps
// the labels that name the target.
func TestLabelContract(t *testing.T) {
	alerts := loadAlerts(t)
	tests := []struct {
		alert    string
		service  string
		severity string
		forDur   string
		target   []string // labels every aggregation must keep
	}{
		{"HighErrorRate", "companion-api", "critical", "5m", []string{"namespace", "deployment"}},
		{"HighResponseTime", "companion-api", "warning", "5m", []string{"namespace", "deployment"}},
		{"LowCacheHitRate", "companion-api", "warning", "10m", []string{"namespace", "deployment"}},
		{"HighMemoryUsage", "companion-api", "warning", "5m", []string{"namespace", "pod", "container"}},
		{"PodCrashLooping", "companion-api", "critical", "5m", []string{"namespace", "pod", "container"}},
		{"RemediatorDown", "remediator", "critical", "5m", nil},
		{"RemediatorRunsFailing", "remediator", "warning", "", []string{"namespace"}},
		{"RemediatorEscalationUnacknowledged", "remediator", "critical", "1h", []string{"namespace"}},
	}
	require.Len(t, alerts, len(tests), "every alert in rules/ is listed here")
	for _, tc := range tests {
		t.Run(tc.alert, func(t *testing.T) {
			r, ok := alerts[tc.alert]
			require.True(t, ok, "alert %s is missing", tc.alert)
			require.Equal(t, tc.service, r.Labels["service"])
			require.Equal(t, tc.severity, r.Labels["severity"])
			require.Equal(t, tc.forDur, r.For)
			for _, a := range []string{"summary", "description", "runbook_url"} {
				require.NotEmpty(t, r.Annotations[a], "annotation %s", a)
			}
			for _, m := range byClause.FindAllStringSubmatch(r.Expr, -1) {
				for _, l := range tc.target {
					require.Contains(t, m[1], l, "aggregation %q drops %s", m[0], l)
				}
			}
		})
	}
}
