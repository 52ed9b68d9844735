package apiserver

import (
	"errors"
	"fmt"
	"time"
)

// Config is everything companion-api can be told at start-up. Start from
// DefaultConfig; cmd/companion-api fills it from flags and environment.
type Config struct {
	// Addr is the listen address, such as ":8080" or "127.0.0.1:8080".
	Addr string

	// Workers bounds how many API requests are handled at once (WORKERS).
	Workers int
	// WorkerWait is how long a request waits for a free worker before it
	// is answered 503.
	WorkerWait time.Duration

	// L1Size bounds the in-process cache in entries (CACHE_L1_SIZE).
	L1Size int
	// L1TTL is the in-process cache's time-to-live (CACHE_L1_TTL).
	L1TTL time.Duration
	// L2TTL is the Redis cache's time-to-live.
	L2TTL time.Duration

	// RedisAddr turns on the Redis second cache level (REDIS_ADDR).
	RedisAddr     string
	RedisPassword string
	RedisDB       int

	// ElasticsearchURLs turn on the Elasticsearch store
	// (ELASTICSEARCH_URL); empty uses the embedded store.
	ElasticsearchURLs     []string
	ElasticsearchUsername string
	ElasticsearchPassword string
	ElasticsearchAPIKey   string
	// ElasticsearchIndexPrefix is put before a collection name to make its
	// index name.
	ElasticsearchIndexPrefix string

	// RequestTimeout bounds the work on one request.
	RequestTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server's timeouts.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds graceful shutdown: requests still running
	// after it are cut off.
	ShutdownTimeout time.Duration
	// DependencyTimeout bounds each call to Redis and each /health check.
	DependencyTimeout time.Duration
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64

	// Faults is fault injection, off unless Faults.Enabled.
	Faults FaultConfig
}

// FaultConfig makes companion-api misbehave on purpose so that each of its
// alerts can be fired. Every field but Enabled is refused unless Enabled
// is set, and the /admin/faults endpoint answers 403 without it.
type FaultConfig struct {
	// Enabled allows fault injection at start-up and through /admin/faults.
	Enabled bool `json:"enabled"`
	// ErrorRatio is the share of API requests answered 500, from 0 to 1.
	ErrorRatio float64 `json:"error_ratio"`
	// Latency is added to every API request.
	Latency time.Duration `json:"latency"`
	// MemoryBytes is memory allocated and held.
	MemoryBytes int64 `json:"memory_bytes"`
	// CacheBypass makes every read skip the cache.
	CacheBypass bool `json:"cache_bypass"`
	// FailStart makes New fail, so the process exits at start-up and a
	// Kubernetes pod crash-loops.
	FailStart bool `json:"fail_start"`
}

// maxFaultMemory caps FaultConfig.MemoryBytes, so a typo cannot take the
// whole machine.
const maxFaultMemory = 8 << 30

// DefaultConfig returns the defaults: port 8080, 4 workers, an L1 of 100
// entries for 60 seconds, no Redis, the embedded store, faults off.
func DefaultConfig() Config {
	return Config{
		Addr:                     ":8080",
		Workers:                  4,
		WorkerWait:               100 * time.Millisecond,
		L1Size:                   100,
		L1TTL:                    60 * time.Second,
		L2TTL:                    5 * time.Minute,
		ElasticsearchIndexPrefix: "companion-",
		RequestTimeout:           10 * time.Second,
		ReadHeaderTimeout:        5 * time.Second,
		ReadTimeout:              15 * time.Second,
		WriteTimeout:             30 * time.Second,
		IdleTimeout:              120 * time.Second,
		ShutdownTimeout:          20 * time.Second,
		DependencyTimeout:        2 * time.Second,
		MaxBodyBytes:             1 << 20,
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Addr == "" {
		add("addr: must be set")
	}
	if c.Workers < 1 {
		add("workers %d: must be at least 1", c.Workers)
	}
	if c.WorkerWait < 0 {
		add("worker wait %s: must not be negative", c.WorkerWait)
	}
	if c.L1Size < 0 {
		add("cache l1 size %d: must not be negative", c.L1Size)
	}
	if c.L1TTL <= 0 {
		add("cache l1 ttl %s: must be positive", c.L1TTL)
	}
	if c.L2TTL <= 0 {
		add("cache l2 ttl %s: must be positive", c.L2TTL)
	}
	for name, d := range map[string]time.Duration{
		"request timeout":     c.RequestTimeout,
		"read header timeout": c.ReadHeaderTimeout,
		"read timeout":        c.ReadTimeout,
		"write timeout":       c.WriteTimeout,
		"idle timeout":        c.IdleTimeout,
		"shutdown timeout":    c.ShutdownTimeout,
		"dependency timeout":  c.DependencyTimeout,
	} {
		if d <= 0 {
			add("%s %s: must be positive", name, d)
		}
	}
	if c.MaxBodyBytes <= 0 {
		add("max body bytes %d: must be positive", c.MaxBodyBytes)
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (f FaultConfig) validate() error {
	var errs []error
	if f.ErrorRatio < 0 || f.ErrorRatio > 1 {
		errs = append(errs, fmt.Errorf("fault error ratio %g: must be from 0 to 1", f.ErrorRatio))
	}
	if f.Latency < 0 {
		errs = append(errs, fmt.Errorf("fault latency %s: must not be negative", f.Latency))
	}
	if f.MemoryBytes < 0 || f.MemoryBytes > maxFaultMemory {
		errs = append(errs, fmt.Errorf("fault memory %d bytes: must be from 0 to %d",
			f.MemoryBytes, int64(maxFaultMemory)))
	}
	if !f.Enabled && f.active() {
		errs = append(errs, errors.New(
			"fault injection is disabled: set --faults-enabled or FAULTS_ENABLED=true to inject faults"))
	}
	return errors.Join(errs...)
}

// active reports whether any fault is asked for.
func (f FaultConfig) active() bool {
	return f.ErrorRatio > 0 || f.Latency > 0 || f.MemoryBytes > 0 || f.CacheBypass || f.FailStart
}
