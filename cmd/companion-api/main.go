// Command companion-api runs the cached, instrumented document API that the
// remediator's shipped rules and playbooks watch. Every flag can also be
// set by the environment variable named in its help; a flag given on the
// command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/companion/remediator/apiserver"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "companion-api: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, logLevel, err := parseFlags(args)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(
		collectors.ProcessCollectorOpts{}))
	srv, err := apiserver.New(cfg, logger, reg)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		return err
	}
	logger.Info("companion_api_stopped_cleanly")
	return nil
}

// env reads flag defaults from the environment and remembers the first
// value it could not parse.
type env struct{ errs []error }

func (e *env) str(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func (e *env) int(name string, def int) int {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a whole number", name, v))
	}
	return n
}

func (e *env) float(name string, def float64) float64 {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a number", name, v))
	}
	return f
}

func (e *env) bool(name string, def bool) bool {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want true or false", name, v))
	}
	return b
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want a duration such as 250ms", name, v))
	}
	return d
}

func parseFlags(args []string) (apiserver.Config, slog.Level, error) {
	cfg := apiserver.DefaultConfig()
	var e env
	fs := flag.NewFlagSet("companion-api", flag.ContinueOnError)

	fs.StringVar(&cfg.Addr, "addr", e.str("ADDR", cfg.Addr), "listen address (ADDR)")
	fs.IntVar(&cfg.Workers, "workers", e.int("WORKERS", cfg.Workers),
		"requests handled at once; more wait briefly, then get 503 (WORKERS)")
	fs.DurationVar(&cfg.WorkerWait, "worker-wait", e.duration("WORKER_WAIT", cfg.WorkerWait),
		"how long a request waits for a free worker (WORKER_WAIT)")
	fs.IntVar(&cfg.L1Size, "cache-l1-size", e.int("CACHE_L1_SIZE", cfg.L1Size),
		"in-process cache entries (CACHE_L1_SIZE)")
	l1TTL := fs.Int("cache-l1-ttl", e.int("CACHE_L1_TTL", int(cfg.L1TTL/time.Second)),
		"in-process cache time-to-live in seconds (CACHE_L1_TTL)")
	fs.DurationVar(&cfg.L2TTL, "cache-l2-ttl", e.duration("CACHE_L2_TTL", cfg.L2TTL),
		"Redis cache time-to-live (CACHE_L2_TTL)")
	fs.StringVar(&cfg.RedisAddr, "redis-addr", e.str("REDIS_ADDR", ""),
		"Redis host:port for the second cache level and invalidations; empty: L1 only (REDIS_ADDR)")
	redisPass := fs.String("redis-password-file", e.str("REDIS_PASSWORD_FILE", ""),
		"file holding the Redis password; or set REDIS_PASSWORD (REDIS_PASSWORD_FILE)")
	fs.IntVar(&cfg.RedisDB, "redis-db", e.int("REDIS_DB", 0), "Redis database (REDIS_DB)")
	esURLs := fs.String("elasticsearch-url", e.str("ELASTICSEARCH_URL", ""),
		"comma-separated Elasticsearch URLs; empty: embedded store (ELASTICSEARCH_URL)")
	fs.StringVar(&cfg.ElasticsearchUsername, "elasticsearch-username",
		e.str("ELASTICSEARCH_USERNAME", ""), "Elasticsearch user (ELASTICSEARCH_USERNAME)")
	esPass := fs.String("elasticsearch-password-file", e.str("ELASTICSEARCH_PASSWORD_FILE", ""),
		"file holding the Elasticsearch password; or set ELASTICSEARCH_PASSWORD (ELASTICSEARCH_PASSWORD_FILE)")
	esKey := fs.String("elasticsearch-api-key-file", e.str("ELASTICSEARCH_API_KEY_FILE", ""),
		"file holding the Elasticsearch API key; or set ELASTICSEARCH_API_KEY (ELASTICSEARCH_API_KEY_FILE)")
	fs.StringVar(&cfg.ElasticsearchIndexPrefix, "elasticsearch-index-prefix",
		e.str("ELASTICSEARCH_INDEX_PREFIX", cfg.ElasticsearchIndexPrefix),
		"index name prefix (ELASTICSEARCH_INDEX_PREFIX)")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout",
		e.duration("REQUEST_TIMEOUT", cfg.RequestTimeout), "bound on one request (REQUEST_TIMEOUT)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout",
		e.duration("SHUTDOWN_TIMEOUT", cfg.ShutdownTimeout),
		"graceful shutdown bound (SHUTDOWN_TIMEOUT)")

	fs.BoolVar(&cfg.Faults.Enabled, "faults-enabled", e.bool("FAULTS_ENABLED", false),
		"allow fault injection by the flags below and PUT /admin/faults (FAULTS_ENABLED)")
	fs.Float64Var(&cfg.Faults.ErrorRatio, "fault-error-ratio", e.float("FAULT_ERROR_RATIO", 0),
		"share of API requests answered 500, 0 to 1 (FAULT_ERROR_RATIO)")
	fs.DurationVar(&cfg.Faults.Latency, "fault-latency", e.duration("FAULT_LATENCY", 0),
		"latency added to every API request (FAULT_LATENCY)")
	memory := fs.Int("fault-memory-bytes", e.int("FAULT_MEMORY_BYTES", 0),
		"bytes of memory to allocate and hold (FAULT_MEMORY_BYTES)")
	fs.BoolVar(&cfg.Faults.CacheBypass, "fault-cache-bypass", e.bool("FAULT_CACHE_BYPASS", false),
		"make every read skip the cache (FAULT_CACHE_BYPASS)")
	fs.BoolVar(&cfg.Faults.FailStart, "fault-fail-start", e.bool("FAULT_FAIL_START", false),
		"exit with an error at start-up, for a crash loop (FAULT_FAIL_START)")
	logLevel := fs.String("log-level", e.str("LOG_LEVEL", "info"),
		"debug, info, warn or error (LOG_LEVEL)")

	if err := errors.Join(e.errs...); err != nil {
		return cfg, 0, fmt.Errorf("read environment: %w", err)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	cfg.L1TTL = time.Duration(*l1TTL) * time.Second
	// Secrets come from the environment or from files, never from flags,
	// which any user of the machine can read in the process list.
	for _, sec := range []struct {
		dst       *string
		env, file string
	}{
		{&cfg.RedisPassword, "REDIS_PASSWORD", *redisPass},
		{&cfg.ElasticsearchPassword, "ELASTICSEARCH_PASSWORD", *esPass},
		{&cfg.ElasticsearchAPIKey, "ELASTICSEARCH_API_KEY", *esKey},
	} {
		*sec.dst = os.Getenv(sec.env)
		if sec.file == "" {
			continue
		}
		data, err := os.ReadFile(sec.file)
		if err != nil {
			return cfg, 0, fmt.Errorf("read secret for %s: %w", sec.env, err)
		}
		*sec.dst = strings.TrimSpace(string(data))
	}
	cfg.Faults.MemoryBytes = int64(*memory)
	for _, u := range strings.Split(*esURLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.ElasticsearchURLs = append(cfg.ElasticsearchURLs, u)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return cfg, 0, fmt.Errorf("log level %q: %w", *logLevel, err)
	}
	return cfg, level, nil
}
