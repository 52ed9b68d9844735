// Package deploy holds the Kubernetes manifests and the Alertmanager
// configuration; its tests check that they are valid.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/companion/remediator/remediator"
	"github.com/companion/remediator/remediator/playbook"
)

// TestManifestsDecodeStrictly decodes every manifest with the API types of
// client-go, refusing unknown and duplicate fields.
func TestManifestsDecodeStrictly(t *testing.T) {
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	dec := codecs.UniversalDeserializer()
	files, err := filepath.Glob("kubernetes/*.yaml")
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		yd := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc map[string]any
			err := yd.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
			raw, err := yaml.Marshal(doc)
			require.NoError(t, err)
			obj, gvk, err := dec.Decode(raw, nil, nil)
			require.NoError(t, err, "%s: %s", f, raw)
			require.NotNil(t, obj)
			kinds[gvk.Kind]++
		}
	}
	require.Equal(t, 3, kinds["Deployment"])
	require.Equal(t, 3, kinds["Service"])
	require.Equal(t, 1, kinds["Role"])
}

// TestRemediatorConfigLoads reads the in-cluster configuration with the
// same code serve uses.
func TestRemediatorConfigLoads(t *testing.T) {
	t.Setenv(remediator.EnvWebhookToken, "test-token")
	cfg, err := remediator.LoadConfig("kubernetes/remediator.yml")
	require.NoError(t, err)
	require.Equal(t, []string{"companion"}, cfg.Namespaces)
	require.NotNil(t, cfg.Store.Redis)
}

// TestPlaybookLinksAreTheShippedPlaybooks checks that the kustomization's
// playbooks are the repository's own files and all load.
func TestPlaybookLinksAreTheShippedPlaybooks(t *testing.T) {
	links, err := filepath.Glob("kubernetes/playbooks/*.yml")
	require.NoError(t, err)
	shipped, err := filepath.Glob("../playbooks/*.yml")
	require.NoError(t, err)
	require.Len(t, links, len(shipped))
	_, err = playbook.Load("kubernetes/playbooks/*.yml")
	require.NoError(t, err)
}

// TestAlertmanagerConfig runs amtool check-config on the receiver
// configuration.
func TestAlertmanagerConfig(t *testing.T) {
	amtool, err := exec.LookPath("amtool")
	require.NoError(t, err, "amtool is not installed: run `make deps`")
	out, err := exec.Command(amtool, "check-config", "alertmanager/alertmanager.yml").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS")
}

// TestPrometheusConfig checks that the scrape configuration gives
// companion-api's series the labels the rules group by and the playbooks
// render targets from. promtool cannot check this file here: Debian's
// Prometheus is built without Kubernetes service discovery.
func TestPrometheusConfig(t *testing.T) {
	data, err := os.ReadFile("prometheus/prometheus.yml")
	require.NoError(t, err)
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			RelabelConfigs []struct {
				TargetLabel string `yaml:"target_label"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	require.Equal(t, []string{"/etc/prometheus/rules/*.rules.yml"}, cfg.RuleFiles)
	jobs := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, rc := range sc.RelabelConfigs {
			if rc.TargetLabel != "" {
				jobs[sc.JobName] = append(jobs[sc.JobName], rc.TargetLabel)
			}
		}
	}
	require.ElementsMatch(t, []string{"namespace", "deployment", "pod"}, jobs["companion-api"])
	require.Contains(t, jobs, "remediator", "RemediatorDown needs up{job=\"remediator\"}")
}
