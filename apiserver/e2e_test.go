package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/companion/remediator/remediator"
	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/state"
	"github.com/companion/remediator/remediator/testenv"
)

// shortRule writes a copy of one alert from rules/companion-api.rules.yml
// with its `for` and rate windows shortened, so that the end-to-end test
// fires in seconds. The promtool tests in rules/ cover the real durations.
func shortRule(t *testing.T, alert string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "rules", "companion-api.rules.yml"))
	require.NoError(t, err)
	var file struct {
		Groups []struct {
			Name  string           `yaml:"name"`
			Rules []map[string]any `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &file))
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r["alert"] != alert {
				continue
			}
			r["for"] = "3s"
			r["expr"] = strings.ReplaceAll(r["expr"].(string), "[5m]", "[10s]")
			out, err := yaml.Marshal(map[string]any{"groups": []any{
				map[string]any{"name": "e2e", "rules": []any{r}},
			}})
			require.NoError(t, err)
			return testenv.WriteFile(t, t.TempDir(), "e2e.rules.yml", string(out))
		}
	}
	t.Fatalf("alert %s is not in rules/companion-api.rules.yml", alert)
	return ""
}

// startRemediator runs the real remediator in-process, plan-only, with the
// shipped playbooks, and returns its executor and state.
func startRemediator(t *testing.T) (*httptest.Server, *action.PlanOnly, *state.Memory, *testenv.Bodies) {
	t.Helper()
	playbooks, err := filepath.Abs(filepath.Join("..", "playbooks"))
	require.NoError(t, err)
	cfg := fmt.Sprintf("playbooks:\n  - %q\nnamespaces: [companion]\n",
		filepath.Join(playbooks, "*.yml"))
	cfgPath := testenv.WriteFile(t, t.TempDir(), "remediator.yml", cfg)

	t.Setenv(remediator.EnvWebhookToken, "e2e-token")
	exec := &action.PlanOnly{}
	st := state.NewMemory()
	app, err := remediator.New(t.Context(), remediator.Options{
		ConfigPath: cfgPath,
		DataDir:    t.TempDir(),
		Store:      st,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry:   prometheus.NewRegistry(),
		Executor:   exec,
		Console:    io.Discard,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	app.Start(ctx)
	rec := &testenv.Bodies{}
	srv := httptest.NewServer(rec.Wrap(app.Handler()))
	t.Cleanup(srv.Close)
	return srv, exec, st, rec
}

// TestEndToEndHighErrorRate runs the whole loop with real parts: real
// Prometheus scrapes an in-process companion-api, fault injection makes
// half its requests fail, a short copy of the HighErrorRate rule fires,
// real Alertmanager posts it to the in-process remediator, and the
// remediator plans the HighErrorRate playbook's restart of the deployment
// the alert names.
func TestEndToEndHighErrorRate(t *testing.T) {
	cfg := testConfig()
	cfg.Faults.Enabled = true
	api := startReplica(t, cfg)
	rem, exec, st, rec := startRemediator(t)

	am := testenv.StartAlertmanager(t, testenv.AlertmanagerOptions{
		WebhookURL:  rem.URL + "/webhook/alertmanager",
		BearerToken: "e2e-token",
	})
	prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		Jobs: []testenv.ScrapeJob{{
			Name:    "companion-api",
			Targets: []string{strings.TrimPrefix(api.URL, "http://")},
			// What the relabeling in rules/README.md gives in a cluster.
			Labels: map[string]string{"namespace": "companion", "deployment": "companion-api"},
		}},
		RuleFiles:       []string{shortRule(t, "HighErrorRate")},
		AlertmanagerURL: am.URL,
	})

	// Steady traffic, then half of it failing.
	ctx, stopTraffic := context.WithCancel(context.Background())
	t.Cleanup(stopTraffic)
	go traffic(ctx, api.URL+"/v1/collections/shop/documents?limit=1")
	status, body := call(t, "PUT", api.URL+"/admin/faults", `{"error_ratio":0.5}`)
	require.Equal(t, 200, status, body)

	testenv.Eventually(t, 60*time.Second, func() bool {
		return rec.Count(`"alertname":"HighErrorRate"`) > 0
	}, "alertmanager did not deliver HighErrorRate to the remediator")
	require.Positive(t, rec.Count(`"deployment":"companion-api"`), "the alert names the deployment")

	var firing []testenv.PromAlert
	for _, a := range prom.Alerts(t) {
		if a.State == "firing" {
			firing = append(firing, a)
		}
	}
	require.Len(t, firing, 1)
	require.Equal(t, "critical", firing[0].Labels["severity"])
	require.Equal(t, "companion", firing[0].Labels["namespace"])

	testenv.Eventually(t, 20*time.Second, func() bool { return len(exec.Planned()) > 0 },
		"the remediator planned nothing for HighErrorRate")
	first := exec.Planned()[0]
	require.Equal(t, action.Restart, first.Action)
	require.Equal(t, action.Target{Kind: "Deployment", Namespace: "companion", Name: "companion-api"},
		first.Target)
	incs, err := st.Incidents(context.Background(), true)
	require.NoError(t, err)
	require.Len(t, incs, 1)
	require.Equal(t, "HighErrorRate", incs[0].Labels["alertname"])
}

// traffic sends GETs to url every 10ms until ctx ends.
func traffic(ctx context.Context, url string) {
	c := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
