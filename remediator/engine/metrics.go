package engine

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Alert outcomes, the values of the outcome label.
const (
	OutcomeMatched   = "matched"
	OutcomeUnmatched = "unmatched"
	OutcomeDuplicate = "duplicate"
	OutcomeSkipped   = "skipped"
	OutcomeResolved  = "resolved"
	OutcomeInvalid   = "invalid"
)

type metrics struct {
	notifications *prometheus.CounterVec
	truncated     prometheus.Counter
	alerts        *prometheus.CounterVec
	runs          *prometheus.CounterVec
	skipped       *prometheus.CounterVec
	stepDuration  *prometheus.HistogramVec
	queueLength   prometheus.GaugeFunc
	queueCapacity prometheus.Gauge
	inflight      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, queueLen func() float64) *metrics {
	f := promauto.With(reg)
	return &metrics{
		notifications: f.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_webhook_notifications_total",
			Help: "Webhook notifications received from Alertmanager, by group status.",
		}, []string{"status"}),
		truncated: f.NewCounter(prometheus.CounterOpts{
			Name: "remediator_webhook_truncated_alerts_total",
			Help: "Alerts Alertmanager left out of notifications (truncatedAlerts).",
		}),
		alerts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_alerts_total",
			Help: "Alerts judged, by outcome and, for skipped ones, reason.",
		}, []string{"outcome", "reason"}),
		runs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_runs_total",
			Help: "Playbook runs finished, by playbook and result.",
		}, []string{"playbook", "result"}),
		skipped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "remediator_runs_skipped_total",
			Help: "Runs a guard kept from acting, by reason.",
		}, []string{"reason"}),
		stepDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "remediator_step_duration_seconds",
			Help:    "Time each playbook step took, by action.",
			Buckets: []float64{.001, .01, .1, .5, 1, 5, 15, 60, 300, 900},
		}, []string{"action"}),
		queueLength: f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "remediator_queue_length",
			Help: "Jobs waiting for a worker.",
		}, queueLen),
		queueCapacity: f.NewGauge(prometheus.GaugeOpts{
			Name: "remediator_queue_capacity",
			Help: "Jobs the queue holds before the webhook answers 503.",
		}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "remediator_runs_in_progress",
			Help: "Playbook runs being executed now.",
		}),
	}
}

// Metrics exposes the engine's collectors to tests in other packages.
type Metrics struct{ m *metrics }

// Runs is remediator_runs_total.
func (m Metrics) Runs() *prometheus.CounterVec { return m.m.runs }
