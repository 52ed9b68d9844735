package testenv

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// webhookBody is the part of Alertmanager's webhook payload these tests read.
type webhookBody struct {
	Version string `json:"version"`
	Status  string `json:"status"`
	Alerts  []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

type recorder struct {
	mu     sync.Mutex
	auth   []string
	bodies []webhookBody
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var b webhookBody
	if err := json.NewDecoder(req.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.bodies = append(r.bodies, b)
	r.mu.Unlock()
}

func (r *recorder) snapshot() ([]string, []webhookBody) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auth...), append([]webhookBody(nil), r.bodies...)
}

func TestPrometheusAlertReachesWebhook(t *testing.T) {
	rec := &recorder{}
	hook := httptest.NewServer(rec)
	t.Cleanup(hook.Close)

	am := StartAlertmanager(t, AlertmanagerOptions{
		WebhookURL:  hook.URL + "/webhook/alertmanager",
		BearerToken: "s3cret",
	})
	rules := WriteFile(t, t.TempDir(), "always.rules.yml", `groups:
  - name: always
    rules:
      - alert: AlwaysFiring
        expr: vector(1) > 0
        labels:
          severity: warning
          namespace: shop
      - alert: Silenced
        expr: vector(1) > 0
`)
	silenceID := am.AddSilence(t, time.Hour, "test", `alertname="Silenced"`)
	require.NotEmpty(t, silenceID, "amtool returned no silence id")

	prom := StartPrometheus(t, PrometheusOptions{
		RuleFiles:       []string{rules},
		AlertmanagerURL: am.URL,
		Jobs: []ScrapeJob{{
			Name:    "self",
			Targets: []string{strings.TrimPrefix(am.URL, "http://")},
			Labels:  map[string]string{"namespace": "monitoring"},
		}},
	})

	Eventually(t, 30*time.Second, func() bool {
		_, bodies := rec.snapshot()
		return len(bodies) > 0
	}, "alertmanager posted nothing to the webhook")

	auth, bodies := rec.snapshot()
	require.Equal(t, "Bearer s3cret", auth[0], "webhook Authorization header")
	for _, b := range bodies {
		require.Equal(t, "4", b.Version, "payload version")
		for _, a := range b.Alerts {
			require.NotEqual(t, "Silenced", a.Labels["alertname"], "silenced alert was delivered")
		}
	}
	require.Equal(t, "shop", bodies[0].Alerts[0].Labels["namespace"])

	Eventually(t, 20*time.Second, func() bool {
		return len(prom.Query(t, `up{job="self",namespace="monitoring"} == 1`)) == 1
	}, "prometheus did not scrape its target with the job labels")
	firing := 0
	for _, a := range prom.Alerts(t) {
		if a.State == "firing" {
			firing++
		}
	}
	require.Equal(t, 2, firing, "firing alerts in prometheus")
}

func TestAlertmanagerConfig(t *testing.T) {
	tests := []struct {
		name string
		opts AlertmanagerOptions
		want []string
		not  []string
	}{
		{
			name: "defaults send resolved with no auth",
			opts: AlertmanagerOptions{WebhookURL: "http://127.0.0.1:1/hook"},
			want: []string{"send_resolved: true", "group_wait: 100ms", "repeat_interval: 3600s"},
			not:  []string{"http_config"},
		},
		{
			name: "basic auth and dropped resolved",
			opts: AlertmanagerOptions{
				WebhookURL:        "http://127.0.0.1:1/hook",
				BasicAuthUser:     "am",
				BasicAuthPassword: "pw",
				DropResolved:      true,
				GroupInterval:     2 * time.Second,
			},
			want: []string{"basic_auth:", `username: "am"`, "send_resolved: false", "group_interval: 2s"},
			not:  []string{"Bearer"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := alertmanagerConfig(tc.opts)
			for _, w := range tc.want {
				require.Contains(t, got, w)
			}
			for _, n := range tc.not {
				require.NotContains(t, got, n)
			}
		})
	}
}
