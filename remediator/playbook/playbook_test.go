package playbook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseReportsEveryErrorWithLine(t *testing.T) {
	cases := []struct {
		name string
		file string
		want []string
	}{
		{
			name: "semantic errors",
			file: "testdata/bad.yml",
			want: []string{
				"testdata/bad.yml:1: version must be 1, got 2",
				`testdata/bad.yml:2: name "Bad_Name" must be lowercase letters, digits and '-'`,
				"testdata/bad.yml:3: match.alertname is required",
				`testdata/bad.yml:5: matcher "severity=~\"(crit\"": `,
				`testdata/bad.yml:7: target.kind must be Deployment or StatefulSet, got "Pod"`,
				"testdata/bad.yml:8: template namespace: ",
				"testdata/bad.yml:11: replicas is not a field of a restart step",
				`testdata/bad.yml:12: unknown action "explode"`,
				"testdata/bad.yml:14: scaling to 0 needs allow_zero: true",
				"testdata/bad.yml:17: min 5 is above max 3",
				"testdata/bad.yml:19: a verify step needs both query and below, or neither",
				"testdata/bad.yml:21: a notify step needs a message",
			},
		},
		{
			name: "unknown fields and bad values, all at once",
			file: "testdata/unknown-field.yml",
			want: []string{
				"testdata/unknown-field.yml:10: unknown field cooldwn",
				"testdata/unknown-field.yml:13: unknown field on_falure",
				"testdata/unknown-field.yml:15: ",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			require.NoError(t, err)
			pb, errs := Parse(tc.file, data)
			require.Nil(t, pb)
			require.Len(t, errs, len(tc.want), "errors:\n%s", errs.Error())
			for i, w := range tc.want {
				require.True(t, strings.HasPrefix(errs[i].Error(), w),
					"error %d is %q, want prefix %q", i, errs[i].Error(), w)
			}
		})
	}
}

func TestLoadShippedPlaybooks(t *testing.T) {
	set, err := Load("../../playbooks/*.yml")
	require.NoError(t, err)
	require.Equal(t, 5, set.Len())
	for _, name := range []string{"HighErrorRate", "HighResponseTime", "LowCacheHitRate",
		"HighMemoryUsage", "PodCrashLooping"} {
		got := set.Match(map[string]string{"alertname": name, "service": "companion-api"})
		require.Len(t, got, 1, "alert %s", name)
		require.NotEmpty(t, got[0].Description)
	}
}

func TestLoadRefusesDuplicateNamesAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	body := "version: 1\nname: same\nmatch: {alertname: A}\n" +
		"target: {kind: Deployment, namespace: default, name: x}\nsteps: [{action: restart}]\n"
	for _, f := range []string{"a.yml", "b.yml"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(body), 0o600))
	}
	_, err := Load(filepath.Join(dir, "*.yml"))
	require.ErrorContains(t, err, `b.yml:1: playbook name "same" is already used in`)
}

func TestLoadNoFiles(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "*.yml"))
	require.ErrorContains(t, err, "no playbook files match")
}

func TestMatch(t *testing.T) {
	pb := mustParse(t, `version: 1
name: m
match:
  alertname: HighErrorRate
  matchers: ['severity=~"critical|page"', 'team!="db"']
target: {kind: Deployment, namespace: default, name: x}
steps: [{action: restart}]
`)
	set, err := NewSet(pb)
	require.NoError(t, err)
	cases := []struct {
		name   string
		labels map[string]string
		want   int
	}{
		{"all match", map[string]string{"alertname": "HighErrorRate", "severity": "critical"}, 1},
		{"regex is anchored", map[string]string{"alertname": "HighErrorRate", "severity": "critical2"}, 0},
		{"negative matcher", map[string]string{"alertname": "HighErrorRate", "severity": "page", "team": "db"}, 0},
		{"other alertname", map[string]string{"alertname": "Other", "severity": "critical"}, 0},
		{"missing label is empty", map[string]string{"alertname": "HighErrorRate"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Len(t, set.Match(tc.labels), tc.want)
		})
	}
}

func TestRenderTargetTreatsLabelsAsUntrusted(t *testing.T) {
	pb := mustParse(t, `version: 1
name: r
match: {alertname: A}
target:
  kind: Deployment
  namespace: '{{ .Labels.namespace }}'
  name: '{{ .Labels.deployment }}-web'
steps: [{action: restart}]
`)
	allowed := map[string]bool{"shop": true}
	cases := []struct {
		name       string
		labels     map[string]string
		wantName   string
		wantReason string
	}{
		{"valid", map[string]string{"namespace": "shop", "deployment": "cart"}, "cart-web", ""},
		{"missing label", map[string]string{"namespace": "shop"}, "", ReasonMissingLabel},
		{"namespace outside allow-list", map[string]string{"namespace": "kube-system", "deployment": "dns"}, "", ReasonNamespaceNotAllowed},
		{"path traversal", map[string]string{"namespace": "shop", "deployment": "../../secrets"}, "", ReasonInvalidTarget},
		{"spaces and newlines", map[string]string{"namespace": "shop", "deployment": "a b\nc"}, "", ReasonInvalidTarget},
		{"template syntax in a value is not run", map[string]string{"namespace": "shop", "deployment": "{{ .Labels }}"}, "", ReasonInvalidTarget},
		{"uppercase namespace", map[string]string{"namespace": "Shop", "deployment": "cart"}, "", ReasonInvalidTarget},
		{"overlong name", map[string]string{"namespace": "shop", "deployment": strings.Repeat("a", 300)}, "", ReasonInvalidTarget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tgt, err := pb.RenderTarget(Data{Labels: tc.labels}, allowed)
			if tc.wantReason == "" {
				require.NoError(t, err)
				require.Equal(t, tc.wantName, tgt.Name)
				require.Equal(t, "shop", tgt.Namespace)
				return
			}
			var te *TargetError
			require.ErrorAs(t, err, &te)
			require.Equal(t, tc.wantReason, te.Reason, "err: %v", err)
		})
	}
}

func TestDefaults(t *testing.T) {
	pb := mustParse(t, `version: 1
name: d
match: {alertname: A}
target: {kind: Deployment, namespace: default, name: x}
guards: {max_runs: 2}
steps: [{action: restart}, {action: restart}, {action: verify}]
`)
	require.Equal(t, "restart", pb.Steps[0].Name)
	require.Equal(t, "restart-2", pb.Steps[1].Name)
	require.Equal(t, OnFailureAbort, pb.Steps[0].OnFailure)
	require.Equal(t, OnSuccessStop, pb.Steps[2].OnSuccess)
	require.Equal(t, "10m", pb.Steps[2].Timeout.String())
	require.Equal(t, "1d", pb.Guards.Window.String())
}

func mustParse(t *testing.T, src string) *Playbook {
	t.Helper()
	pb, errs := Parse("inline.yml", []byte(src))
	require.Empty(t, errs)
	return pb
}

// TestParseReportsDecodeAndValidationErrorsTogether puts decoding errors
// (an unknown field, a bad duration) and validation errors (a bad version,
// an unknown action, template field typos) in one file: all come at once.
func TestParseReportsDecodeAndValidationErrorsTogether(t *testing.T) {
	data, err := os.ReadFile("testdata/mixed.yml")
	require.NoError(t, err)
	_, errs := Parse("testdata/mixed.yml", data)
	want := []string{
		"testdata/mixed.yml:1: version must be 1, got 2",
		"testdata/mixed.yml:3: unknown field descripton",
		"testdata/mixed.yml:8: template namespace: unknown field .Labls: templates see .Labels and .Annotations",
		`testdata/mixed.yml:11: "-5m" is not a duration`,
		`testdata/mixed.yml:13: unknown action "restrat"`,
		"testdata/mixed.yml:15: template message: unknown field .Lables: templates see .Labels and .Annotations",
	}
	require.Len(t, errs, len(want), "errors:\n%s", errs.Error())
	for i, w := range want {
		require.True(t, strings.HasPrefix(errs[i].Error(), w), "error %d is %q, want %q", i, errs[i].Error(), w)
	}
}
