package remediator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/engine"
	"github.com/companion/remediator/remediator/state"
)

type harness struct {
	app  *App
	srv  *httptest.Server
	reg  *prometheus.Registry
	exec *action.PlanOnly
}

// start builds the whole remediator on the given configuration, with a
// bbolt store in dataDir (a fresh one when empty), and serves it.
func start(t *testing.T, configPath, dataDir string) *harness {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	h := &harness{reg: prometheus.NewRegistry(), exec: &action.PlanOnly{}}
	app, err := New(t.Context(), Options{
		ConfigPath: configPath,
		DataDir:    dataDir,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry:   h.reg,
		Executor:   h.exec,
		Console:    io.Discard,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	app.Start(ctx)
	h.app = app
	h.srv = httptest.NewServer(app.Handler())
	t.Cleanup(func() {
		h.srv.Close()
		cancel()
		app.Engine().Wait()
		require.NoError(t, app.Close())
	})
	return h
}

func (h *harness) post(t *testing.T, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/webhook/alertmanager", bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func (h *harness) postFile(t *testing.T, path string) engine.Summary {
	t.Helper()
	body, err := os.ReadFile(path)
	require.NoError(t, err)
	code, out := h.post(t, body, nil)
	require.Equal(t, http.StatusOK, code, out)
	var sum engine.Summary
	require.NoError(t, json.Unmarshal([]byte(out), &sum))
	return sum
}

// waitIdle waits until every queued run has finished.
func (h *harness) waitIdle(t *testing.T) {
	t.Helper()
	require.Eventually(t, h.app.Engine().Idle, 10*time.Second, 5*time.Millisecond)
}

func outcomes(sum engine.Summary) []string {
	var out []string
	for _, d := range sum.Decisions {
		s := d.Outcome
		if d.Detail != "" && d.Outcome == engine.OutcomeResolved {
			s += ":" + d.Detail
		}
		out = append(out, s)
	}
	return out
}

// TestRealCaptures replays every captured Alertmanager 0.25 and 0.35 body in
// order and checks each alert's outcome: one run per firing instance,
// resolved alerts start nothing and close their incident.
func TestRealCaptures(t *testing.T) {
	h := start(t, "testdata/remediator.yml", "")
	const (
		m   = engine.OutcomeMatched
		dup = engine.OutcomeDuplicate
		un  = engine.OutcomeUnmatched
		cl  = "resolved:incident closed"
		no  = "resolved:no incident was open"
	)
	want := map[string][]string{
		"001-alertmanager.json": {m, m},
		"002-alertmanager.json": {m, dup, dup},
		"003-alertmanager.json": {dup, cl, dup},
		"004-alertmanager.json": {cl, cl},
		"005-alertmanager.json": {un, un},
		"006-alertmanager.json": {no, no},
		"007-alertmanager.json": {un},
		"008-alertmanager.json": {no},
		"009-am035.json":        {m, m},
		"010-am035.json":        {cl, cl},
	}
	files, err := filepath.Glob("../testdata/alertmanager/*.json")
	require.NoError(t, err)
	require.Len(t, files, len(want))
	for _, f := range files {
		sum := h.postFile(t, f)
		require.Equal(t, want[filepath.Base(f)], outcomes(sum), f)
		h.waitIdle(t)
	}
	require.Len(t, h.exec.Planned(), 5*2, "two executor actions for each of the 5 runs")
	incs, err := h.app.Store().Incidents(context.Background(), true)
	require.NoError(t, err)
	require.Empty(t, incs, "every incident was closed by its resolved alert")
	require.Equal(t, 5.0, testutil.ToFloat64(
		h.app.Engine().Metrics().Runs().WithLabelValues("queue-consumer-restart", engine.ResultPlanned)))
}

func TestWebhookAnswers(t *testing.T) {
	good, err := os.ReadFile("../testdata/alertmanager/009-am035.json")
	require.NoError(t, err)
	cases := []struct {
		name     string
		body     []byte
		wantCode int
		wantBody string
	}{
		{"malformed JSON", []byte(`{"version":"4","alerts":[`), 400, "decode webhook payload"},
		{"not an object", []byte(`[1,2]`), 400, "decode webhook payload"},
		{"wrong version", bytes.Replace(good, []byte(`"version":"4"`), []byte(`"version":"3"`), 1), 400,
			`unsupported webhook payload version \"3\"`},
		{"missing alerts", []byte(`{"version":"4","status":"firing"}`), 400, "no alerts list"},
		{"trailing data", append(append([]byte{}, good...), []byte(`{}`)...), 400, "data after the JSON object"},
		{"too large", bytes.Repeat([]byte(" "), 70000), 413, "max_body_bytes"},
		{"empty alerts list", []byte(`{"version":"4","status":"firing","alerts":[]}`), 200, "decisions"},
		{"alert without alertname", []byte(`{"version":"4","alerts":[{"status":"firing","labels":{"a":"b"}}]}`),
			200, "invalid_alert"},
		{"unknown status", []byte(`{"version":"4","alerts":[{"status":"pending","labels":{"alertname":"X"}}]}`),
			200, "neither firing nor resolved"},
		{"valid", good, 200, `"outcome": "matched"`},
	}
	h := start(t, "testdata/remediator.yml", "")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.post(t, tc.body, nil)
			require.Equal(t, tc.wantCode, code, body)
			require.Contains(t, body, tc.wantBody)
		})
	}
}

func TestWebhookAuth(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600))
	cfg := writeConfig(t, dir, "bearer_token_file: "+tokenFile)
	h := start(t, cfg, "")
	body, err := os.ReadFile("../testdata/alertmanager/001-alertmanager.json")
	require.NoError(t, err)

	cases := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"missing", nil, 401},
		{"wrong token", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"token as basic auth", map[string]string{"Authorization": "Basic czNjcmV0LXRva2Vu"}, 401},
		{"prefix of the token", map[string]string{"Authorization": "Bearer s3cret"}, 401},
		{"right token", map[string]string{"Authorization": "Bearer s3cret-token"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := h.post(t, body, tc.hdr)
			require.Equal(t, tc.want, code, out)
			require.NotContains(t, out, "s3cret")
		})
	}
}

func TestWebhookBasicAuth(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvWebhookPassword, "hunter2")
	cfg := writeConfig(t, dir, "basic_auth: {username: alertmanager}")
	h := start(t, cfg, "")
	body := []byte(`{"version":"4","alerts":[]}`)
	req := func(user, pass string) int {
		r, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/webhook/alertmanager", bytes.NewReader(body))
		r.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 401, req("alertmanager", "wrong"))
	require.Equal(t, 401, req("someone", "hunter2"))
	require.Equal(t, 200, req("alertmanager", "hunter2"))
}

func writeConfig(t *testing.T, dir, webhook string) string {
	t.Helper()
	abs, err := filepath.Abs("testdata/playbooks")
	require.NoError(t, err)
	cfg := "playbooks: [" + abs + "/*.yml]\nnamespaces: [default]\nwebhook:\n  " + webhook + "\n"
	path := filepath.Join(dir, "remediator.yml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// TestConcurrentDeliveriesRunOnce posts the same alert from many
// "Alertmanager peers" at once, each with its own externalURL, as an HA pair
// and its retries do: exactly one delivery wins the claim.
func TestConcurrentDeliveriesRunOnce(t *testing.T) {
	h := start(t, "testdata/remediator.yml", "")
	body, err := os.ReadFile("../testdata/alertmanager/009-am035.json")
	require.NoError(t, err)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		matched int
	)
	for i := range 32 {
		peer := bytes.Replace(body, []byte(`"externalURL":"http://127.0.0.1:19193"`),
			[]byte(`"externalURL":"http://peer-`+strings.Repeat("x", i%3)+`:9093"`), 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out := h.post(t, peer, nil)
			require.Equal(t, 200, code)
			mu.Lock()
			matched += strings.Count(out, `"outcome": "matched"`)
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.Equal(t, 2, matched, "one run for each of the two alerts")
	h.waitIdle(t)
	require.Len(t, h.exec.Planned(), 2*2)
}

// TestRestartRemembers stops the remediator and starts a new one on the
// same data directory: the incident is still open and a repeat of the alert
// is a duplicate, not a second run.
func TestRestartRemembers(t *testing.T) {
	dataDir := t.TempDir()
	first := start(t, "testdata/remediator.yml", dataDir)
	sum := first.postFile(t, "../testdata/alertmanager/001-alertmanager.json")
	require.Equal(t, []string{"matched", "matched"}, outcomes(sum))
	first.waitIdle(t)
	first.srv.Close()
	require.NoError(t, first.app.Close())

	second := start(t, "testdata/remediator.yml", dataDir)
	sum = second.postFile(t, "../testdata/alertmanager/002-alertmanager.json")
	require.Equal(t, []string{"matched", "duplicate", "duplicate"}, outcomes(sum))
	second.waitIdle(t)
	incs, err := second.app.Store().Incidents(context.Background(), true)
	require.NoError(t, err)
	require.Len(t, incs, 3)
	require.Len(t, second.exec.Planned(), 2, "only the new alert ran after the restart")
}

// TestStoreDownAnswers503 closes the state store under a running server:
// the claim cannot be recorded, so the webhook answers 503 and acts on
// nothing.
func TestStoreDownAnswers503(t *testing.T) {
	st, err := state.OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	exec := &action.PlanOnly{}
	app, err := New(t.Context(), Options{ConfigPath: "testdata/remediator.yml", Store: st,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Executor: exec,
		Console: io.Discard})
	require.NoError(t, err)
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()
	require.NoError(t, st.Close())

	body, err := os.ReadFile("../testdata/alertmanager/001-alertmanager.json")
	require.NoError(t, err)
	resp, err := http.Post(srv.URL+"/webhook/alertmanager", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(out))
	require.Equal(t, "10", resp.Header.Get("Retry-After"))
	app.Engine().RunPending(t.Context())
	require.Empty(t, exec.Planned())

	resp, err = http.Get(srv.URL + "/-/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

// TestReloadKeepsOldPlaybooksOnError breaks a playbook and reloads: the old
// set stays in force and the failure is counted; fixing it and reloading
// swaps the new set in.
func TestReloadKeepsOldPlaybooksOnError(t *testing.T) {
	dir := t.TempDir()
	pbDir := filepath.Join(dir, "playbooks")
	require.NoError(t, os.MkdirAll(pbDir, 0o700))
	orig, err := os.ReadFile("testdata/playbooks/queue.yml")
	require.NoError(t, err)
	pbFile := filepath.Join(pbDir, "queue.yml")
	require.NoError(t, os.WriteFile(pbFile, orig, 0o600))
	cfg := filepath.Join(dir, "remediator.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("playbooks: [playbooks/*.yml]\nnamespaces: [default]\n"), 0o600))
	h := start(t, cfg, "")

	reload := func() (int, string) {
		resp, err := http.Post(h.srv.URL+"/-/reload", "", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.NoError(t, os.WriteFile(pbFile, []byte("version: 1\nname: x\nbogus: true\n"), 0o600))
	code, body := reload()
	require.Equal(t, 500, code)
	require.Contains(t, body, "queue.yml:3: unknown field bogus")
	require.Equal(t, 0.0, gauge(t, h.reg, "remediator_config_last_reload_successful"))
	sum := h.postFile(t, "../testdata/alertmanager/001-alertmanager.json")
	require.Equal(t, []string{"matched", "matched"}, outcomes(sum), "old playbooks still in force")

	changed := strings.Replace(string(orig), "QueueBacklogHigh", "SomethingElse", 1)
	require.NoError(t, os.WriteFile(pbFile, []byte(changed), 0o600))
	code, body = reload()
	require.Equal(t, 200, code, body)
	require.Equal(t, 1.0, gauge(t, h.reg, "remediator_config_last_reload_successful"))
	sum = h.postFile(t, "../testdata/alertmanager/009-am035.json")
	require.Equal(t, []string{"unmatched", "unmatched"}, outcomes(sum))
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestTruncatedAlertsAreCounted(t *testing.T) {
	h := start(t, "testdata/remediator.yml", "")
	body := []byte(`{"version":"4","status":"resolved","alerts":[],"truncatedAlerts":7}`)
	code, out := h.post(t, body, nil)
	require.Equal(t, 200, code)
	require.Contains(t, out, `"truncatedAlerts": 7`)
	require.Equal(t, 7.0, counter(t, h.reg, "remediator_webhook_truncated_alerts_total"))
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestAcknowledge(t *testing.T) {
	h := start(t, "testdata/remediator.yml", "")
	sum := h.postFile(t, "../testdata/alertmanager/009-am035.json")
	h.waitIdle(t)
	id := sum.Decisions[0].Incident

	post := func(path, body string) (int, string) {
		resp, err := http.Post(h.srv.URL+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post("/api/v1/incidents/"+id+"/ack", `{"by":"alice"}`)
	require.Equal(t, 200, code, body)
	inc, found, err := h.app.Store().Incident(context.Background(), id)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, state.StatusAcknowledged, inc.Status)
	require.Equal(t, "alice", inc.AckedBy)

	code, body = post("/api/v1/incidents/"+id+"/ack", `{"by":"bob"}`)
	require.Equal(t, 409, code, body)
	require.Contains(t, body, "acknowledged by alice")

	code, _ = post("/api/v1/incidents/0000000000000000/ack", `{}`)
	require.Equal(t, 404, code)
	code, body = post("/api/v1/incidents/"+id+"/ack", `{"by":`)
	require.Equal(t, 400, code, body)
}

// TestRestartReleasesQueuedRuns stops the remediator while runs it claimed
// still wait in the queue: after the restart their claims are released, so
// Alertmanager's next notification of the alert runs them, once.
func TestRestartReleasesQueuedRuns(t *testing.T) {
	dataDir := t.TempDir()
	body, err := os.ReadFile("../testdata/alertmanager/001-alertmanager.json")
	require.NoError(t, err)

	// A process that accepts the notification and dies before any worker
	// runs it.
	first, err := New(t.Context(), Options{ConfigPath: "testdata/remediator.yml", DataDir: dataDir,
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		Executor: &action.PlanOnly{}, Console: io.Discard})
	require.NoError(t, err)
	srv := httptest.NewServer(first.Handler())
	resp, err := http.Post(srv.URL+"/webhook/alertmanager", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	srv.Close()
	require.NoError(t, first.Close())

	second := start(t, "testdata/remediator.yml", dataDir)
	sum := second.postFile(t, "../testdata/alertmanager/001-alertmanager.json")
	require.Equal(t, []string{"matched", "matched"}, outcomes(sum), "claims were released")
	second.waitIdle(t)
	require.Len(t, second.exec.Planned(), 4)
	sum = second.postFile(t, "../testdata/alertmanager/001-alertmanager.json")
	require.Equal(t, []string{"duplicate", "duplicate"}, outcomes(sum))
}

// TestReloadAppliesGlobalGuards turns dry run and a maintenance window on by
// reloading: both take effect without a restart.
func TestReloadAppliesGlobalGuards(t *testing.T) {
	abs, err := filepath.Abs("testdata/playbooks")
	require.NoError(t, err)
	cfg := filepath.Join(t.TempDir(), "remediator.yml")
	base := "playbooks: [" + abs + "/*.yml]\nnamespaces: [default]\n"
	require.NoError(t, os.WriteFile(cfg, []byte(base), 0o600))
	h := start(t, cfg, "")
	require.False(t, h.app.Engine().Rules().DryRun)

	require.NoError(t, os.WriteFile(cfg, []byte(base+"dry_run: true\nmaintenance:\n"+
		"  - {name: upgrade, start: 2026-01-01T00:00:00Z, end: 2099-01-01T00:00:00Z}\n"), 0o600))
	require.NoError(t, h.app.Reload(t.Context()))
	r := h.app.Engine().Rules()
	require.True(t, r.DryRun)
	require.Len(t, r.Maintenance, 1)

	sum := h.postFile(t, "../testdata/alertmanager/009-am035.json")
	require.Equal(t, []string{"matched", "matched"}, outcomes(sum))
	h.waitIdle(t)
	require.Empty(t, h.exec.Planned(), "the maintenance window holds every run")
}
