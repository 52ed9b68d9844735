package remediator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type reloadMetrics struct {
	total      *prometheus.CounterVec
	lastOK     prometheus.Gauge
	lastOKTime prometheus.Gauge
	playbooks  prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	f := promauto.With(reg)
	return &reloadMetrics{
		total: f.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_config_reloads_total",
			Help: "Configuration and playbook reloads, by result.",
		}, []string{"result"}),
		lastOK: f.NewGauge(prometheus.GaugeOpts{
			Name: "remediator_config_last_reload_successful",
			Help: "Whether the last reload succeeded (1) or kept the old playbooks (0).",
		}),
		lastOKTime: f.NewGauge(prometheus.GaugeOpts{
			Name: "remediator_config_last_reload_success_timestamp_seconds",
			Help: "When the playbooks in force were loaded.",
		}),
		playbooks: f.NewGauge(prometheus.GaugeOpts{
			Name: "remediator_playbooks_loaded",
			Help: "Playbooks in force.",
		}),
	}
}

func (m *reloadMetrics) success(n int) {
	m.total.WithLabelValues("success").Inc()
	m.lastOK.Set(1)
	m.lastOKTime.Set(float64(time.Now().Unix()))
	m.playbooks.Set(float64(n))
}

func (m *reloadMetrics) failure() {
	m.total.WithLabelValues("failure").Inc()
	m.lastOK.Set(0)
}
