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

	// series caches the children of the three vectors per label set, so a
	// request costs one map lookup instead of three label hashes. The set
	// is bounded: methods times route patterns times status codes.
	mu     sync.RWMutex
	series map[seriesKey]*httpSeries
}

type seriesKey struct {
	method, route string
	code          int
}

type httpSeries struct {
	duration prometheus.Observer
	requests prometheus.Counter
	errors   prometheus.Counter // nil below 500
}

func (m *httpMetrics) get(k seriesKey) *httpSeries {
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if ok {
		return s
	}
	code := strconv.Itoa(k.code)
	s = &httpSeries{
		duration: m.duration.WithLabelValues(k.method, k.route, code),
		requests: m.requests.WithLabelValues(k.method, k.route, code),
	}
	if k.code >= 500 {
		s.errors = m.errors.WithLabelValues(k.method, k.route, code)
	}
	m.mu.Lock()
	m.series[k] = s
	m.mu.Unlock()
	return s
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
		series: make(map[seriesKey]*httpSeries),
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
		s := m.get(seriesKey{method: methodLabel(r.Method), route: route, code: status})
		s.duration.Observe(time.Since(start).Seconds())
		s.requests.Inc()
		if s.errors != nil {
			s.errors.Inc()
		}
	})
}

// methodLabel keeps the method label to a fixed set: any method a client
// invents is counted as OTHER.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
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
