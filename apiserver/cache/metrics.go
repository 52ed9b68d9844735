package cache

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// windowSeconds is the span of the cache_hit_rate gauge.
const windowSeconds = 60

type metrics struct {
	hits   *prometheus.CounterVec
	misses *prometheus.CounterVec
	hitsL1 prometheus.Counter
	hitsL2 prometheus.Counter
	missL1 prometheus.Counter
	missL2 prometheus.Counter
	window *window
}

func newMetrics(reg prometheus.Registerer, now func() time.Time) (*metrics, error) {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cache_hits_total",
			Help: "Cache lookups answered by a cache level, by the level that answered.",
		}, []string{"level"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cache_misses_total",
			Help: "Cache lookups that no level answered, counted once at the last level asked.",
		}, []string{"level"}),
		window: &window{now: now},
	}
	rate := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cache_hit_rate",
		Help: "Share of cache lookups answered by a cache level over the last 60 seconds.",
	}, m.window.rate)
	for _, c := range []prometheus.Collector{m.hits, m.misses, rate} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register cache metrics: %w", err)
		}
	}
	m.hitsL1 = m.hits.WithLabelValues(LevelL1)
	m.hitsL2 = m.hits.WithLabelValues(LevelL2)
	m.missL1 = m.misses.WithLabelValues(LevelL1)
	m.missL2 = m.misses.WithLabelValues(LevelL2)
	return m, nil
}

func (m *metrics) hit(level string) {
	if level == LevelL1 {
		m.hitsL1.Inc()
	} else {
		m.hitsL2.Inc()
	}
	m.window.add(true)
}

func (m *metrics) miss(level string) {
	if level == LevelL1 {
		m.missL1.Inc()
	} else {
		m.missL2.Inc()
	}
	m.window.add(false)
}

// window counts hits and misses in one-second buckets over the last
// windowSeconds seconds.
type window struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets [windowSeconds]bucket
}

type bucket struct {
	second int64
	hits   uint64
	misses uint64
}

func (w *window) add(hit bool) {
	sec := w.now().Unix()
	w.mu.Lock()
	b := &w.buckets[sec%windowSeconds]
	if b.second != sec {
		*b = bucket{second: sec}
	}
	if hit {
		b.hits++
	} else {
		b.misses++
	}
	w.mu.Unlock()
}

// rate returns hits/(hits+misses) over the window, or 1 when there were no
// lookups: an idle cache is not a failing cache.
func (w *window) rate() float64 {
	sec := w.now().Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	var hits, total uint64
	for _, b := range w.buckets {
		if sec-b.second < windowSeconds {
			hits += b.hits
			total += b.hits + b.misses
		}
	}
	if total == 0 {
		return 1
	}
	return float64(hits) / float64(total)
}
