package apiserver

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// unmatchedRoute is the route label of requests that matched no route, so
// that unknown paths never become label values.
const unmatchedRoute = "unmatched"

type httpMetrics struct {
	duration *prometheus.HistogramVec
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	labels := []string{"method", "route", "code"}
	m := &httpMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "api_request_duration_seconds",
			Help: "Time to answer an HTTP request, by method, chi route pattern and status code.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, labels),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "api_requests_total",
			Help: "HTTP requests answered, by method, chi route pattern and status code.",
		}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "api_errors_total",
			Help: "HTTP requests answered with a 5xx status, by method, chi route pattern and status code.",
		}, labels),
	}
	cpu := &cpuGauge{last: time.Now(), lastCPU: cpuSeconds()}
	collectors := []prometheus.Collector{
		m.duration, m.requests, m.errors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "api_memory_bytes",
			Help: "Resident memory of the companion-api process in bytes.",
		}, residentBytes),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "api_cpu_usage",
			Help: "CPU used by the process since the previous scrape, in cores (1 = one core busy).",
		}, cpu.value),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register api metrics: %w", err)
		}
	}
	return m, nil
}

// instrument records every request's duration, count and 5xx count under
// its chi route pattern.
func (m *httpMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)

		route := unmatchedRoute
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if p := rc.RoutePattern(); p != "" {
				route = p
			}
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		code := strconv.Itoa(status)
		m.duration.WithLabelValues(r.Method, route, code).Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(r.Method, route, code).Inc()
		if status >= 500 {
			m.errors.WithLabelValues(r.Method, route, code).Inc()
		}
	})
}

// residentBytes reads the process's resident set size from /proc, and
// falls back to the memory the Go runtime holds from the OS elsewhere.
func residentBytes() float64 {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return float64(pages * int64(os.Getpagesize()))
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.Sys)
}

// cpuGauge turns the process's CPU time into a rate between scrapes.
type cpuGauge struct {
	mu      sync.Mutex
	last    time.Time
	lastCPU float64
}

func (c *cpuGauge) value() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now, cpu := time.Now(), cpuSeconds()
	wall := now.Sub(c.last).Seconds()
	used := cpu - c.lastCPU
	c.last, c.lastCPU = now, cpu
	if wall <= 0 {
		return 0
	}
	return used / wall
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
