package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// ScrapeJob is one scrape_configs entry of a test Prometheus.
type ScrapeJob struct {
	// Name is the job label, for example "companion-api".
	Name string
	// Targets are host:port pairs, usually 127.0.0.1 and a free port.
	Targets []string
	// Labels are added to every series scraped from Targets, the way a
	// relabeling rule adds namespace or deployment in a cluster.
	Labels map[string]string
	// MetricsPath defaults to /metrics.
	MetricsPath string
}

// PrometheusOptions configures StartPrometheus. The zero value starts a
// Prometheus that scrapes nothing, evaluates no rules and sends no alerts.
type PrometheusOptions struct {
	// Jobs are the scrape jobs.
	Jobs []ScrapeJob
	// RuleFiles are rule file paths; relative paths are taken from the
	// test's working directory.
	RuleFiles []string
	// AlertmanagerURL is the base URL of an Alertmanager to send alerts to,
	// for example Alertmanager.URL; empty sends none.
	AlertmanagerURL string
	// ScrapeInterval defaults to one second.
	ScrapeInterval time.Duration
	// EvaluationInterval defaults to one second.
	EvaluationInterval time.Duration
	// ResendDelay is how long Prometheus waits before sending a firing
	// alert to Alertmanager again; it defaults to one second.
	ResendDelay time.Duration
}

// Prometheus is a running Prometheus server started by StartPrometheus.
type Prometheus struct {
	// URL is the server's base URL, such as http://127.0.0.1:41234.
	URL string
	// ConfigFile is the path of the prometheus.yml it runs with.
	ConfigFile string
	// Process is the running program.
	Process *Process
}

// StartPrometheus writes a configuration from opts into a temporary
// directory, starts prometheus on a free loopback port with its storage in
// that directory, and waits until it is ready. It fails the test, with a
// hint to run `make deps`, when prometheus is not installed.
func StartPrometheus(t testing.TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	dir := t.TempDir()
	cfg, err := prometheusConfig(opts)
	if err != nil {
		t.Fatalf("write prometheus config: %v", err)
	}
	cfgPath := WriteFile(t, dir, "prometheus.yml", cfg)

	port := FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := Start(t, dir, "prometheus",
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--web.external-url="+base,
		"--web.enable-lifecycle",
		"--rules.alert.resend-delay="+promDuration(orDefault(opts.ResendDelay, time.Second)),
		"--log.level=warn",
	)
	WaitHTTP(t, p, base+"/-/ready", 30*time.Second)
	return &Prometheus{URL: base, ConfigFile: cfgPath, Process: p}
}

func prometheusConfig(opts PrometheusOptions) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n",
		promDuration(orDefault(opts.ScrapeInterval, time.Second)),
		promDuration(orDefault(opts.ScrapeInterval, time.Second)))
	fmt.Fprintf(&b, "  evaluation_interval: %s\n",
		promDuration(orDefault(opts.EvaluationInterval, time.Second)))

	if len(opts.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range opts.RuleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				return "", fmt.Errorf("resolve rule file %s: %w", f, err)
			}
			fmt.Fprintf(&b, "  - %s\n", quote(abs))
		}
	}

	if opts.AlertmanagerURL != "" {
		u, err := url.Parse(opts.AlertmanagerURL)
		if err != nil {
			return "", fmt.Errorf("parse alertmanager url %q: %w", opts.AlertmanagerURL, err)
		}
		b.WriteString("alerting:\n  alertmanagers:\n")
		fmt.Fprintf(&b, "    - scheme: %s\n      api_version: v2\n", u.Scheme)
		if u.Path != "" && u.Path != "/" {
			fmt.Fprintf(&b, "      path_prefix: %s\n", quote(u.Path))
		}
		fmt.Fprintf(&b, "      static_configs:\n        - targets: [%s]\n", quote(u.Host))
	}

	b.WriteString("scrape_configs:\n")
	if len(opts.Jobs) == 0 {
		b.WriteString("  []\n")
	}
	for _, j := range opts.Jobs {
		fmt.Fprintf(&b, "  - job_name: %s\n", quote(j.Name))
		if j.MetricsPath != "" {
			fmt.Fprintf(&b, "    metrics_path: %s\n", quote(j.MetricsPath))
		}
		b.WriteString("    static_configs:\n      - targets:\n")
		for _, target := range j.Targets {
			fmt.Fprintf(&b, "          - %s\n", quote(target))
		}
		if len(j.Labels) > 0 {
			b.WriteString("        labels:\n")
			for _, k := range sortedKeys(j.Labels) {
				fmt.Fprintf(&b, "          %s: %s\n", k, quote(j.Labels[k]))
			}
		}
	}
	return b.String(), nil
}

// PromAlert is one alert as Prometheus's /api/v1/alerts lists it.
type PromAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Value       string            `json:"value"`
}

// Alerts returns the alerts Prometheus holds now, pending and firing.
func (p *Prometheus) Alerts(t testing.TB) []PromAlert {
	t.Helper()
	var out struct {
		Data struct {
			Alerts []PromAlert `json:"alerts"`
		} `json:"data"`
	}
	getJSON(t, p.URL+"/api/v1/alerts", &out)
	return out.Data.Alerts
}

// Sample is one element of an instant query's vector result.
type Sample struct {
	Metric map[string]string
	Value  string
}

// Query runs an instant PromQL query and returns its vector result; a
// query whose result is not a vector fails the test.
func (p *Prometheus) Query(t testing.TB, expr string) []Sample {
	t.Helper()
	var out struct {
		Data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	getJSON(t, p.URL+"/api/v1/query?query="+url.QueryEscape(expr), &out)
	if out.Data.ResultType != "vector" {
		t.Fatalf("query %q: result type %q, want vector", expr, out.Data.ResultType)
	}
	samples := make([]Sample, 0, len(out.Data.Result))
	for _, r := range out.Data.Result {
		v, _ := r.Value[1].(string)
		samples = append(samples, Sample{Metric: r.Metric, Value: v})
	}
	return samples
}

func getJSON(t testing.TB, u string, into any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatalf("build request for %s: %v", u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("decode %s: %v", u, err)
	}
}

// promDuration formats d the way Prometheus and Alertmanager configs read
// durations; sub-second parts are kept as milliseconds.
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// quote makes s a YAML double-quoted scalar; JSON strings are valid YAML.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
