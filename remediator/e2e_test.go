package remediator

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/state"
	"github.com/companion/remediator/remediator/testenv"
)

// TestEndToEndPrometheusAlertmanager runs the real path: Prometheus scrapes
// a target, a rule fires, Alertmanager posts to the remediator (with a
// bearer token) and repeats every second. One planned run per firing alert
// however often it repeats; the resolved alert closes the incident and
// starts nothing; a silenced alert never arrives.
func TestEndToEndPrometheusAlertmanager(t *testing.T) {
	// A small metrics target whose queue depths the test sets.
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "e2e_queue_depth"}, []string{"queue"})
	targetReg := prometheus.NewRegistry()
	targetReg.MustRegister(depth)
	depth.WithLabelValues("orders").Set(1)
	depth.WithLabelValues("payments").Set(1)
	target := httptest.NewServer(promhttp.HandlerFor(targetReg, promhttp.HandlerOpts{}))
	defer target.Close()

	// The remediator under test, in-process, on a real listener.
	t.Setenv(EnvWebhookToken, "e2e-token")
	exec := &action.PlanOnly{}
	st := state.NewMemory()
	app, err := New(t.Context(), Options{
		ConfigPath: "testdata/remediator.yml",
		Store:      st,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry:   prometheus.NewRegistry(),
		Executor:   exec,
		Console:    io.Discard,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app.Start(ctx)
	rec := &testenv.Bodies{}
	srv := httptest.NewServer(rec.Wrap(app.Handler()))
	defer srv.Close()

	am := testenv.StartAlertmanager(t, testenv.AlertmanagerOptions{
		WebhookURL:     srv.URL + "/webhook/alertmanager",
		BearerToken:    "e2e-token",
		GroupBy:        []string{"alertname", "queue"},
		RepeatInterval: time.Second,
	})
	silence := am.AddSilence(t, time.Hour, "e2e: payments is under maintenance", `queue="payments"`)
	require.NotEmpty(t, silence)
	prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		Jobs:            []testenv.ScrapeJob{{Name: "e2e", Targets: []string{strings.TrimPrefix(target.URL, "http://")}}},
		RuleFiles:       []string{"testdata/e2e.rules.yml"},
		AlertmanagerURL: am.URL,
	})

	// Both queues back up; only orders may reach the remediator.
	depth.WithLabelValues("orders").Set(50)
	depth.WithLabelValues("payments").Set(70)
	testenv.Eventually(t, 30*time.Second, func() bool {
		return rec.Count(`"queue":"orders"`) >= 4
	}, "alertmanager did not deliver and repeat the orders alert (deliveries: %d)",
		rec.Count(`"queue":"orders"`))

	incs, err := st.Incidents(ctx, true)
	require.NoError(t, err)
	require.Len(t, incs, 1, "one incident for the one firing alert instance")
	require.Equal(t, "orders", incs[0].Labels["queue"])
	testenv.Eventually(t, 10*time.Second, func() bool { return len(exec.Planned()) == 2 },
		"the run planned restart and wait-for-rollout once, got %d actions", len(exec.Planned()))
	require.Equal(t, "orders-consumer", exec.Planned()[0].Target.Name)

	// The payments alert fires in Prometheus and sits silenced in
	// Alertmanager: it never arrives.
	var firing []string
	for _, a := range prom.Alerts(t) {
		if a.State == "firing" {
			firing = append(firing, a.Labels["queue"])
		}
	}
	require.ElementsMatch(t, []string{"orders", "payments"}, firing)
	require.True(t, amHasSilenced(t, am.URL, "payments"), "payments is silenced in Alertmanager")
	require.Zero(t, rec.Count(`"queue":"payments"`), "a silenced alert must never reach the remediator")

	// Resolve orders: the incident closes and nothing new runs.
	depth.WithLabelValues("orders").Set(0)
	testenv.Eventually(t, 30*time.Second, func() bool {
		incs, err := st.Incidents(ctx, true)
		require.NoError(t, err)
		return len(incs) == 0
	}, "the resolved alert did not close the incident")
	require.Positive(t, rec.Count(`"status":"resolved"`))
	require.Len(t, exec.Planned(), 2, "a resolved alert starts nothing")
	all, err := st.Incidents(ctx, false)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, state.StatusResolved, all[0].Status)
}

func amHasSilenced(t *testing.T, amURL, queue string) bool {
	t.Helper()
	resp, err := http.Get(amURL + "/api/v2/alerts?silenced=true&active=false")
	require.NoError(t, err)
	defer resp.Body.Close()
	var alerts []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State      string   `json:"state"`
			SilencedBy []string `json:"silencedBy"`
		} `json:"status"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&alerts))
	for _, a := range alerts {
		if a.Labels["queue"] == queue && len(a.Status.SilencedBy) > 0 {
			return true
		}
	}
	return false
}
