package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/apiserver"
	"github.com/companion/remediator/apiserver/store"
	"github.com/companion/remediator/remediator/testenv"
)

// replica is one in-process companion-api served on a loopback port.
type replica struct {
	URL  string
	Reg  *prometheus.Registry
	Srv  *apiserver.Server
	stop func() error
}

// startReplica starts a server with cfg (Addr is ignored) and stops it when
// the test ends.
func startReplica(t *testing.T, cfg apiserver.Config, opts ...apiserver.Option) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := apiserver.New(cfg, logger, reg, opts...)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-srv.CacheSubscribed():
	case <-time.After(10 * time.Second):
		t.Fatal("replica did not subscribe to cache invalidations")
	}
	return &replica{URL: "http://" + ln.Addr().String(), Reg: reg, Srv: srv, stop: stop}
}

func testConfig() apiserver.Config {
	cfg := apiserver.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	return cfg
}

var client = &http.Client{Timeout: 10 * time.Second}

// call sends a request and returns the status and body.
func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestDocumentAPI(t *testing.T) {
	r := startReplica(t, testConfig())
	base := r.URL + "/v1/collections/shop"

	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		status   int
		contains string
	}{
		{"put creates", "PUT", "/documents/w1", `{"name":"red widget"}`, 200, `"id":"w1"`},
		{"get returns it", "GET", "/documents/w1", "", 200, `"name":"red widget"`},
		{"put replaces", "PUT", "/documents/w1", `{"name":"blue widget"}`, 200, `blue`},
		{"get sees the replacement", "GET", "/documents/w1", "", 200, `"name":"blue widget"`},
		{"post creates with an id", "POST", "/documents", `{"name":"gadget"}`, 201, `"id":"`},
		{"bulk writes several", "POST", "/bulk",
			`[{"id":"w2","data":{"name":"green widget"}},{"id":"w3","data":{"name":"teapot"}}]`,
			200, `"indexed":2`},
		{"list pages", "GET", "/documents?limit=2", "", 200, `"total":4`},
		{"search matches words", "GET", "/search?q=widget", "", 200, `"total":2`},
		{"search needs a word", "GET", "/search?q=", "", 400, `at least one word`},
		{"bad limit", "GET", "/documents?limit=1000", "", 400, `limit`},
		{"body must be an object", "PUT", "/documents/w9", `[1,2]`, 400, `JSON object`},
		{"bad id", "GET", "/documents/..%2Fetc", "", 400, `document id`},
		{"delete", "DELETE", "/documents/w1", "", 204, ""},
		{"get after delete", "GET", "/documents/w1", "", 404, `not found`},
		{"delete missing", "DELETE", "/documents/w1", "", 404, `not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, tc.method, base+tc.path, tc.body)
			require.Equal(t, tc.status, status, body)
			require.Contains(t, body, tc.contains)
		})
	}
}

func TestCrossReplicaInvalidation(t *testing.T) {
	tests := []struct {
		name      string
		redis     bool
		wantFresh bool
	}{
		{name: "with redis a write on one replica clears the others' L1", redis: true, wantFresh: true},
		{name: "control: without redis the other replica serves its L1 copy", redis: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.redis {
				cfg.RedisAddr = testenv.StartRedis(t).Addr
			}
			// One store shared by both, as replicas share Elasticsearch.
			shared := store.NewMemory()
			a := startReplica(t, cfg, apiserver.WithStore(shared))
			b := startReplica(t, cfg, apiserver.WithStore(shared))
			doc := "/v1/collections/shop/documents/w1"

			status, _ := call(t, "PUT", a.URL+doc, `{"v":1}`)
			require.Equal(t, 200, status)
			_, body := call(t, "GET", b.URL+doc, "")
			require.Contains(t, body, `"v":1`, "b caches v1 in its L1 (TTL 60s)")

			status, _ = call(t, "PUT", a.URL+doc, `{"v":2}`)
			require.Equal(t, 200, status)
			fresh := func() bool {
				_, body := call(t, "GET", b.URL+doc, "")
				return strings.Contains(body, `"v":2`)
			}
			if tc.wantFresh {
				testenv.Eventually(t, 5*time.Second, fresh, "replica b kept serving v1 after a's write")
				return
			}
			time.Sleep(300 * time.Millisecond)
			require.False(t, fresh(), "without invalidation b's L1 still holds v1")
		})
	}
}

func TestWorkersLimit(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 2
	cfg.WorkerWait = 50 * time.Millisecond
	cfg.Faults.Enabled = true
	cfg.Faults.Latency = 400 * time.Millisecond
	r := startReplica(t, cfg)

	const n = 8
	codes := make(chan int, n)
	retry := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(r.URL + "/v1/collections/shop/documents?limit=1")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
			retry <- resp.Header.Get("Retry-After")
		}()
	}
	wg.Wait()
	close(codes)
	close(retry)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	require.Equal(t, 2, count[200], "exactly WORKERS requests are served: %v", count)
	require.Equal(t, n-2, count[503], "the rest wait briefly, then get 503: %v", count)
	sawRetry := false
	for v := range retry {
		sawRetry = sawRetry || v == "1"
	}
	require.True(t, sawRetry, "503 carries Retry-After")

	status, _ := call(t, "GET", r.URL+"/health", "")
	require.Equal(t, 200, status, "health is not bound by workers")
}

func TestFaultInjection(t *testing.T) {
	t.Run("refused at start unless enabled", func(t *testing.T) {
		cfg := testConfig()
		cfg.Faults.ErrorRatio = 0.5
		_, err := apiserver.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		require.ErrorContains(t, err, "fault injection is disabled")
	})
	t.Run("admin endpoint refused unless enabled", func(t *testing.T) {
		r := startReplica(t, testConfig())
		status, body := call(t, "PUT", r.URL+"/admin/faults", `{"error_ratio":1}`)
		require.Equal(t, 403, status)
		require.Contains(t, body, "disabled")
		status, _ = call(t, "GET", r.URL+"/v1/collections/shop/documents", "")
		require.Equal(t, 200, status, "nothing was injected")
	})
	t.Run("fail start", func(t *testing.T) {
		cfg := testConfig()
		cfg.Faults = apiserver.FaultConfig{Enabled: true, FailStart: true}
		_, err := apiserver.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		require.ErrorContains(t, err, "failing start-up on purpose")
	})
	t.Run("enabled: errors, bypass, memory, then off", func(t *testing.T) {
		cfg := testConfig()
		cfg.Faults.Enabled = true
		r := startReplica(t, cfg)
		status, body := call(t, "PUT", r.URL+"/admin/faults",
			`{"error_ratio":1,"cache_bypass":true,"memory_bytes":67108864}`)
		require.Equal(t, 200, status, body)
		status, _ = call(t, "GET", r.URL+"/v1/collections/shop/documents", "")
		require.Equal(t, 500, status)
		require.GreaterOrEqual(t, gauge(t, r.Reg, "api_memory_bytes"), float64(64<<20))
		require.Equal(t, 1.0, sumCounter(t, r.Reg, "api_errors_total"))

		status, body = call(t, "PUT", r.URL+"/admin/faults", `{"error_ratio":2}`)
		require.Equal(t, 400, status, body)
		status, _ = call(t, "PUT", r.URL+"/admin/faults", `{}`)
		require.Equal(t, 200, status)
		status, _ = call(t, "GET", r.URL+"/v1/collections/shop/documents", "")
		require.Equal(t, 200, status)
	})
}

func TestMetricsUseRoutePatterns(t *testing.T) {
	r := startReplica(t, testConfig())
	call(t, "PUT", r.URL+"/v1/collections/shop/documents/secret-id-42", `{"a":1}`)
	call(t, "GET", r.URL+"/v1/collections/shop/documents/secret-id-42", "")
	call(t, "GET", r.URL+"/v1/collections/shop/documents/secret-id-42", "")
	call(t, "GET", r.URL+"/no/such/secret-path", "")
	call(t, "BREW", r.URL+"/v1/collections/shop/documents", "")

	families, err := r.Reg.Gather()
	require.NoError(t, err)
	names := map[string]*dto.MetricFamily{}
	for _, f := range families {
		names[f.GetName()] = f
	}
	for _, want := range []string{
		"api_request_duration_seconds", "api_requests_total", "cache_hits_total",
		"cache_misses_total", "cache_hit_rate", "api_memory_bytes", "api_cpu_usage",
	} {
		require.Contains(t, names, want)
	}
	require.Equal(t, dto.MetricType_HISTOGRAM, names["api_request_duration_seconds"].GetType())

	routes := map[string]bool{}
	for _, m := range names["api_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
			require.NotContains(t, l.GetValue(), "secret", "raw paths must not become labels")
		}
		require.ElementsMatch(t, []string{"method", "route", "code"}, keys(labels))
		routes[labels["route"]] = true
	}
	require.True(t, routes["/v1/collections/{collection}/documents/{id}"], "routes: %v", routes)
	require.True(t, routes["unmatched"], "routes: %v", routes)
	require.Equal(t, 1.0, counterWith(t, r.Reg, "api_requests_total", "method", "OTHER"),
		"invented methods share one label value")
	require.Equal(t, 1.0, counterWith(t, r.Reg, "cache_hits_total", "level", "l1"))
	require.Equal(t, 1.0, counterWith(t, r.Reg, "cache_misses_total", "level", "l1"))

	status, body := call(t, "GET", r.URL+"/metrics", "")
	require.Equal(t, 200, status)
	require.Contains(t, body, "api_request_duration_seconds_bucket")
}

func TestHealth(t *testing.T) {
	t.Run("embedded defaults", func(t *testing.T) {
		r := startReplica(t, testConfig())
		status, body := call(t, "GET", r.URL+"/health", "")
		require.Equal(t, 200, status)
		require.JSONEq(t, `{"status":"ok",
			"store":{"kind":"embedded","status":"ok"},
			"cache":{"kind":"none","status":"ok","l1_entries":0,"l1_size":100}}`, body)
	})
	t.Run("redis down is degraded but serving", func(t *testing.T) {
		redis := testenv.StartRedis(t)
		cfg := testConfig()
		cfg.RedisAddr = redis.Addr
		cfg.DependencyTimeout = 500 * time.Millisecond
		r := startReplica(t, cfg)
		status, body := call(t, "GET", r.URL+"/health", "")
		require.Equal(t, 200, status, body)
		require.Contains(t, body, `"status":"ok"`)

		redis.Stop()
		status, body = call(t, "GET", r.URL+"/health", "")
		require.Equal(t, 200, status, body)
		require.Contains(t, body, `"status":"degraded"`)
		call(t, "PUT", r.URL+"/v1/collections/shop/documents/a", `{"a":1}`)
		status, _ = call(t, "GET", r.URL+"/v1/collections/shop/documents/a", "")
		require.Equal(t, 200, status, "reads fall back to the store")
	})
	t.Run("store down is 503", func(t *testing.T) {
		cfg := testConfig()
		cfg.ElasticsearchURLs = []string{"http://" + closedAddr(t)}
		cfg.DependencyTimeout = 500 * time.Millisecond
		r := startReplica(t, cfg)
		status, body := call(t, "GET", r.URL+"/health", "")
		require.Equal(t, 503, status, body)
		require.Contains(t, body, `"status":"down"`)
	})
}

func TestGracefulShutdown(t *testing.T) {
	cfg := testConfig()
	cfg.Faults.Enabled = true
	cfg.Faults.Latency = 300 * time.Millisecond
	r := startReplica(t, cfg)

	result := make(chan int, 1)
	go func() {
		resp, err := client.Get(r.URL + "/v1/collections/shop/documents")
		if err != nil {
			result <- 0
			return
		}
		resp.Body.Close()
		result <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, r.stop(), "clean shutdown")
	require.Equal(t, 200, <-result, "the request in flight finishes")
	_, err := client.Get(r.URL + "/health")
	require.Error(t, err, "no new connections after shutdown")
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func family(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return family(t, reg, name).GetMetric()[0].GetGauge().GetValue()
}

func sumCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	var sum float64
	for _, m := range family(t, reg, name).GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

func counterWith(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	var sum float64
	for _, m := range family(t, reg, name).GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
