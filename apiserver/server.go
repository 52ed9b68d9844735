// Package apiserver is companion-api: a small JSON document API on chi with
// a two-level cache (in-process L1, Redis L2), an embedded or Elasticsearch
// store, a bound on concurrent requests, Prometheus metrics, and fault
// injection that can fire each of its alerts on purpose.
package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/companion/remediator/apiserver/cache"
	"github.com/companion/remediator/apiserver/store"
)

// Server is one companion-api replica. Build it with New, then call Run
// (or Serve with a listener of your own); Handler serves the same routes
// for tests that bring their own http.Server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	cache   *cache.Cache
	redis   *redis.Client
	metrics *httpMetrics
	faults  *faults
	workers chan struct{}
	handler http.Handler
}

// New builds a Server from cfg, registering its metrics on reg and
// serving reg's metrics at /metrics. reg must also be a Gatherer, such as
// a *prometheus.Registry. It contacts no dependency: /health reports them.
func New(
	cfg Config,
	logger *slog.Logger,
	reg *prometheus.Registry,
	opts ...Option,
) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("companion-api config: %w", err)
	}
	if cfg.Faults.FailStart {
		return nil, errors.New("fault injection: failing start-up on purpose (fail_start)")
	}

	s := &Server{cfg: cfg, log: logger, workers: make(chan struct{}, cfg.Workers)}
	for _, o := range opts {
		o(s)
	}
	var err error
	if s.store == nil {
		if s.store, err = newStore(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.RedisAddr != "" {
		s.redis = redis.NewClient(&redis.Options{
			Addr:         cfg.RedisAddr,
			Password:     cfg.RedisPassword,
			DB:           cfg.RedisDB,
			DialTimeout:  cfg.DependencyTimeout,
			ReadTimeout:  cfg.DependencyTimeout,
			WriteTimeout: cfg.DependencyTimeout,
			PoolTimeout:  cfg.DependencyTimeout,
		})
	}
	s.cache, err = cache.New(cache.Config{
		L1Size: cfg.L1Size,
		L1TTL:  cfg.L1TTL,
		L2TTL:  cfg.L2TTL,
		Redis:  s.redis,
	}, logger, reg)
	if err != nil {
		s.closeRedis()
		return nil, fmt.Errorf("build cache: %w", err)
	}
	if s.metrics, err = newHTTPMetrics(reg); err != nil {
		s.closeRedis()
		return nil, err
	}
	s.faults = newFaults(cfg.Faults, logger, s.cache.SetBypass)
	s.handler = s.routes(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return s, nil
}

// Option changes how New builds a Server.
type Option func(*Server)

// WithStore makes the server use st instead of the store cfg names. Tests
// use it to let several replicas share one store, as replicas in a cluster
// share one Elasticsearch.
func WithStore(st store.Store) Option {
	return func(s *Server) { s.store = st }
}

func newStore(cfg Config) (store.Store, error) {
	if len(cfg.ElasticsearchURLs) == 0 {
		return store.NewMemory(), nil
	}
	es, err := store.NewElastic(store.ElasticConfig{
		Addresses:   cfg.ElasticsearchURLs,
		Username:    cfg.ElasticsearchUsername,
		Password:    cfg.ElasticsearchPassword,
		APIKey:      cfg.ElasticsearchAPIKey,
		IndexPrefix: cfg.ElasticsearchIndexPrefix,
		Timeout:     cfg.RequestTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("build store: %w", err)
	}
	return es, nil
}

// Handler returns the server's routes, metrics and middleware.
func (s *Server) Handler() http.Handler { return s.handler }

// CacheSubscribed is closed once this replica receives cache invalidations
// from the others (at once when there is no Redis).
func (s *Server) CacheSubscribed() <-chan struct{} { return s.cache.Subscribed() }

// Run listens on the configured address and serves until ctx ends, then
// shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		s.release()
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, and receives cache invalidations
// meanwhile. On ctx's end it stops taking connections, lets running
// requests finish within ShutdownTimeout, and releases Redis and held
// memory. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.release()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	cacheCtx, stopCache := context.WithCancel(ctx)
	cacheDone := make(chan struct{})
	go func() {
		defer close(cacheDone)
		_ = s.cache.Run(cacheCtx)
	}()
	defer func() { stopCache(); <-cacheDone }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.log.Info("companion_api_listening", "addr", ln.Addr().String(), "store", s.store.Kind(),
		"redis", s.cfg.RedisAddr != "", "workers", s.cfg.Workers, "faults", s.cfg.Faults.Enabled)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("companion_api_shutting_down", "timeout", s.cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

func (s *Server) release() {
	s.faults.release()
	s.closeRedis()
}

func (s *Server) closeRedis() {
	if s.redis != nil {
		_ = s.redis.Close()
	}
}

// routes wires the API. Every route goes through the metrics middleware;
// the API routes also go through the request timeout, the worker bound and
// fault injection. /health, /metrics and /admin/faults skip the worker
// bound so that probes, scrapes and turning faults off still work when the
// server is saturated.
func (s *Server) routes(metrics http.Handler) http.Handler {
	r := chi.NewRouter()
	r.Use(s.metrics.instrument)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, http.StatusNotFound, errors.New("no such route"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, http.StatusMethodNotAllowed, errors.New("method not allowed"))
	})

	r.Get("/health", s.health)
	r.Method(http.MethodGet, "/metrics", metrics)
	r.Get("/admin/faults", s.getFaults)
	r.Put("/admin/faults", s.putFaults)

	r.Route("/v1/collections/{collection}", func(r chi.Router) {
		r.Use(s.timeout, s.readWhole, s.limit, s.inject)
		r.Get("/documents", s.listDocuments)
		r.Post("/documents", s.createDocument)
		r.Get("/documents/{id}", s.getDocument)
		r.Put("/documents/{id}", s.replaceDocument)
		r.Delete("/documents/{id}", s.deleteDocument)
		r.Get("/search", s.searchDocuments)
		r.Post("/bulk", s.bulkDocuments)
	})
	return r
}

// timeout bounds the request's context by RequestTimeout.
func (s *Server) timeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// readWhole reads a request body in full, within MaxBodyBytes and the
// server's read timeout, before the request takes a worker: a client that
// sends its body slowly must not hold one of the few workers while it does.
func (s *Server) readWhole(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				s.writeError(w, r, http.StatusRequestEntityTooLarge,
					fmt.Errorf("request body is larger than %d bytes", s.cfg.MaxBodyBytes))
				return
			}
			s.writeError(w, r, http.StatusBadRequest, fmt.Errorf("read request body: %w", err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// limit lets at most Workers requests through at once. A request that
// finds none free waits up to WorkerWait, then gets 503 with Retry-After.
func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.workers <- struct{}{}:
		default:
			if !s.waitForWorker(r.Context()) {
				w.Header().Set("Retry-After", "1")
				s.writeError(w, r, http.StatusServiceUnavailable,
					fmt.Errorf("all %d workers busy", s.cfg.Workers))
				return
			}
		}
		defer func() { <-s.workers }()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) waitForWorker(ctx context.Context) bool {
	if s.cfg.WorkerWait <= 0 {
		return false
	}
	t := time.NewTimer(s.cfg.WorkerWait)
	defer t.Stop()
	select {
	case s.workers <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// inject applies fault injection: added latency, then a share of 500s.
func (s *Server) inject(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.faults.inject(r.Context()) {
			s.writeError(w, r, http.StatusInternalServerError, errors.New("injected fault"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
