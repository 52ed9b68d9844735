package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/companion/remediator/apiserver"
	"github.com/companion/remediator/apiserver/store"
	"github.com/companion/remediator/remediator/testenv"
)

// These benchmarks report ratios measured in one run, never assert timing.
// Run them with:
//
//	go test -run '^$' -bench . -benchtime 1x ./apiserver

const benchDoc = "/v1/collections/shop/documents/w1"

// benchServers starts companion-api on defaults with one cached document,
// and a bare chi server that writes the same bytes for the same route.
func benchServers(b *testing.B) (apiURL, bareURL string, api http.Handler, bare http.Handler) {
	b.Helper()
	cfg := apiserver.DefaultConfig()
	srv, err := apiserver.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	api = srv.Handler()
	apiSrv := httptest.NewServer(api)
	b.Cleanup(apiSrv.Close)
	resp, err := http.Post(apiSrv.URL+"/v1/collections/shop/documents", "application/json", nil)
	if err == nil {
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodPut, apiSrv.URL+benchDoc,
		stringsReader(`{"name":"red widget","price":12.5,"tags":["sale","new"]}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(apiSrv.URL + benchDoc)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	r := chi.NewRouter()
	r.Get("/v1/collections/{collection}/documents/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	bare = r
	bareSrv := httptest.NewServer(bare)
	b.Cleanup(bareSrv.Close)
	return apiSrv.URL, bareSrv.URL, api, bare
}

// throughput runs op from conc goroutines for d and returns operations per
// second; an op that fails stops the benchmark.
func throughput(b *testing.B, d time.Duration, conc int, op func() error) float64 {
	b.Helper()
	var done atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := op(); err != nil {
					failed.Store(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	return float64(done.Load()) / time.Since(start).Seconds()
}

func httpGet(c *http.Client, url string) func() error {
	return func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
		}
		return nil
	}
}

func handlerGet(h http.Handler) func() error {
	return func() error {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, benchDoc, nil))
		if w.Code != http.StatusOK {
			return fmt.Errorf("status %d", w.Code)
		}
		return nil
	}
}

// BenchmarkCachedGetVsBareChi reports cached GET throughput of companion-api
// on defaults as a share of a bare chi handler writing the same bytes, over
// loopback HTTP (16 keep-alive clients, 5s each) and in-process (handler
// only, which shows the middleware's cost without the network's).
func BenchmarkCachedGetVsBareChi(b *testing.B) {
	apiURL, bareURL, api, bare := benchServers(b)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 5 * time.Second}
	const d, conc = 5 * time.Second, 16
	for range b.N {
		bareHTTP := throughput(b, d, conc, httpGet(c, bareURL+benchDoc))
		apiHTTP := throughput(b, d, conc, httpGet(c, apiURL+benchDoc))
		bareH := throughput(b, d, conc, handlerGet(bare))
		apiH := throughput(b, d, conc, handlerGet(api))
		b.ReportMetric(apiHTTP/bareHTTP, "http_ratio")
		b.ReportMetric(apiH/bareH, "handler_ratio")
		b.ReportMetric(apiHTTP, "api_http_req/s")
		b.ReportMetric(bareHTTP, "bare_http_req/s")
		b.ReportMetric(apiH, "api_handler_req/s")
		b.ReportMetric(bareH, "bare_handler_req/s")
	}
}

const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d p50=%d p95=%d p99=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
`

var wrkResult = regexp.MustCompile(
	`RESULT requests=(\d+) duration_us=(\d+) errors=(\d+) p50=(\d+) p95=(\d+) p99=(\d+)`)

type wrkRun struct {
	rps           float64
	errors        float64
	p50, p95, p99 float64 // milliseconds
}

// runWrk runs wrk against url on loopback: 200 connections, 2 threads, 10s.
func runWrk(b *testing.B, script, url string) wrkRun {
	b.Helper()
	path, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk is not installed (run `make deps`): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-t2", "-c200", "-d10s", "--timeout", "2s",
		"-s", script, url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	m := wrkResult.FindStringSubmatch(string(out))
	if m == nil {
		b.Fatalf("wrk printed no result:\n%s", out)
	}
	n := make([]float64, len(m))
	for i := 1; i < len(m); i++ {
		n[i], _ = strconv.ParseFloat(m[i], 64)
	}
	return wrkRun{rps: n[1] / (n[2] / 1e6), errors: n[3], p50: n[4] / 1e3, p95: n[5] / 1e3,
		p99: n[6] / 1e3}
}

// BenchmarkWrkLatency reports latency percentiles and throughput from wrk
// at 200 connections on loopback, for companion-api's cached GET and the
// bare chi handler, in one run.
func BenchmarkWrkLatency(b *testing.B) {
	apiURL, bareURL, _, _ := benchServers(b)
	script := testenv.WriteFile(b, b.TempDir(), "report.lua", wrkScript)
	for range b.N {
		bare := runWrk(b, script, bareURL+benchDoc)
		api := runWrk(b, script, apiURL+benchDoc)
		b.ReportMetric(api.p50, "api_p50_ms")
		b.ReportMetric(api.p95, "api_p95_ms")
		b.ReportMetric(api.p99, "api_p99_ms")
		b.ReportMetric(api.rps, "api_req/s")
		b.ReportMetric(api.errors, "api_errors")
		b.ReportMetric(bare.p95, "bare_p95_ms")
		b.ReportMetric(bare.rps, "bare_req/s")
		b.ReportMetric(api.rps/bare.rps, "wrk_ratio")
	}
}

// BenchmarkZipfHitRate reports the cache hit rate under a Zipf-skewed key
// workload (10,000 documents, s=1.1) with the default L1 size (100) and a
// real redis-server as L2, counted from the server's own cache metrics.
func BenchmarkZipfHitRate(b *testing.B) {
	const docs, lookups = 10000, 200000
	redis := testenv.StartRedis(b)
	cfg := apiserver.DefaultConfig()
	cfg.RedisAddr = redis.Addr
	st := store.NewMemory()
	reg := prometheus.NewRegistry()
	srv, err := apiserver.New(cfg, slog.New(slog.DiscardHandler), reg, apiserver.WithStore(st))
	if err != nil {
		b.Fatal(err)
	}
	for i := range docs {
		d := store.Document{ID: fmt.Sprintf("d%d", i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if err := st.Put(context.Background(), "shop", d); err != nil {
			b.Fatal(err)
		}
	}
	h := srv.Handler()
	for range b.N {
		z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, docs-1)
		for range lookups {
			w := httptest.NewRecorder()
			url := fmt.Sprintf("/v1/collections/shop/documents/d%d", z.Uint64())
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, url, nil))
			if w.Code != 200 {
				b.Fatalf("GET %s: %d", url, w.Code)
			}
		}
	}
	l1, l2, miss := counter(b, reg, "cache_hits_total", "l1"), counter(b, reg, "cache_hits_total", "l2"),
		counter(b, reg, "cache_misses_total", "l2")
	total := l1 + l2 + miss
	b.ReportMetric((l1+l2)/total, "hit_rate")
	b.ReportMetric(l1/total, "l1_hit_rate")
	b.ReportMetric(l2/total, "l2_hit_rate")
}

func counter(b *testing.B, reg *prometheus.Registry, name, level string) float64 {
	b.Helper()
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "level" && l.GetValue() == level {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
