// Package playbooks holds the shipped playbooks; its test checks them
// against the alerting rules in rules/.
package playbooks

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/companion/remediator/remediator/playbook"
)

// notifyOnly is the rule label that declares an alert has no playbook on
// purpose.
const notifyOnly = "notify-only"

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTests struct {
	Tests []struct {
		AlertRuleTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestRulesAndPlaybooksAgree checks that every alert in rules/ has a
// playbook or is declared notify-only, that every playbook handles an
// alert that exists, and that each playbook renders a valid target from the
// labels the rule's promtool tests expect the alert to carry.
func TestRulesAndPlaybooksAgree(t *testing.T) {
	set, err := playbook.Load("*.yml")
	require.NoError(t, err)

	alerts := collectAlerts(t) // alertname -> the rule's static labels
	require.NotEmpty(t, alerts)

	for name, lbls := range alerts {
		t.Run("alert "+name, func(t *testing.T) {
			full := map[string]string{"alertname": name}
			for k, v := range lbls {
				full[k] = v
			}
			matched := set.Match(full)
			if lbls["remediation"] == notifyOnly {
				require.Empty(t, matched, "%s is declared notify-only but a playbook matches it", name)
				return
			}
			require.NotEmpty(t, matched,
				"%s has no playbook; add one or label the rule remediation: %s", name, notifyOnly)
		})
	}
	for _, pb := range set.All() {
		t.Run("playbook "+pb.Name, func(t *testing.T) {
			_, ok := alerts[pb.Match.Alertname]
			require.True(t, ok, "%s handles %s, which no rule in rules/ raises",
				pb.Name, pb.Match.Alertname)
		})
	}

	// Render each playbook's target from the labels the promtool tests
	// expect on the firing alert.
	rendered := 0
	for _, exp := range expectedAlerts(t) {
		for _, pb := range set.Match(exp) {
			tgt, err := pb.RenderTarget(playbook.Data{Labels: exp},
				map[string]bool{exp["namespace"]: true})
			require.NoError(t, err, "playbook %s with the labels of %s", pb.Name, exp["alertname"])
			require.Equal(t, exp["namespace"], tgt.Namespace)
			rendered++
		}
	}
	require.GreaterOrEqual(t, rendered, set.Len(), "every playbook rendered at least once")
}

func collectAlerts(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	files, err := filepath.Glob("../rules/*.rules.yml")
	require.NoError(t, err)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var rf ruleFile
		require.NoError(t, yaml.Unmarshal(data, &rf), f)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					out[r.Alert] = r.Labels
				}
			}
		}
	}
	return out
}

func expectedAlerts(t *testing.T) []map[string]string {
	t.Helper()
	var out []map[string]string
	files, err := filepath.Glob("../rules/tests/*.test.yml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var rt ruleTests
		require.NoError(t, yaml.Unmarshal(data, &rt), f)
		for _, tc := range rt.Tests {
			for _, art := range tc.AlertRuleTests {
				for _, ea := range art.ExpAlerts {
					lbls := map[string]string{"alertname": art.Alertname}
					for k, v := range ea.ExpLabels {
						lbls[k] = v
					}
					out = append(out, lbls)
				}
			}
		}
	}
	return out
}
