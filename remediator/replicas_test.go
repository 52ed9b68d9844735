package remediator

import (
	"bytes"
	"context"
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
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/testenv"
)

// TestReplicasShareRedis runs two remediators on one real redis-server and
// sends the same notification to both at once, as an HA pair of
// Alertmanagers would: each alert instance is acted on by one replica only.
func TestReplicasShareRedis(t *testing.T) {
	rds := testenv.StartRedis(t)
	abs, err := filepath.Abs("testdata/playbooks")
	require.NoError(t, err)
	cfg := filepath.Join(t.TempDir(), "remediator.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("playbooks: ["+abs+"/*.yml]\nnamespaces: [default]\n"+
		"store:\n  redis:\n    addr: "+rds.Addr+"\n    prefix: \"test:\"\n"), 0o600))

	var (
		execs []*action.PlanOnly
		urls  []string
		apps  []*App
	)
	for range 2 {
		exec := &action.PlanOnly{}
		app, err := New(t.Context(), Options{ConfigPath: cfg, Executor: exec,
			Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Console: io.Discard})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		app.Start(ctx)
		srv := httptest.NewServer(app.Handler())
		t.Cleanup(func() { srv.Close(); cancel(); app.Engine().Wait(); _ = app.Close() })
		execs, urls, apps = append(execs, exec), append(urls, srv.URL), append(apps, app)
	}

	body, err := os.ReadFile("../testdata/alertmanager/002-alertmanager.json")
	require.NoError(t, err)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		matched int
	)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(urls[i%2]+"/webhook/alertmanager", "application/json", bytes.NewReader(body))
			require.NoError(t, err)
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, 200, resp.StatusCode, string(out))
			mu.Lock()
			matched += strings.Count(string(out), `"outcome": "matched"`)
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.Equal(t, 3, matched, "one claim per alert instance across both replicas")
	require.Eventually(t, func() bool { return apps[0].Engine().Idle() && apps[1].Engine().Idle() },
		10*time.Second, 5*time.Millisecond)
	require.Equal(t, 3*2, len(execs[0].Planned())+len(execs[1].Planned()))
	incs, err := apps[0].Store().Incidents(context.Background(), true)
	require.NoError(t, err)
	require.Len(t, incs, 3, "both replicas see the same incidents")
}
