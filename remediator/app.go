// Package remediator wires the remediator together: configuration,
// playbooks, state store, executor, notifier, engine and the HTTP server.
// cmd/remediator only parses flags and calls into it, so tests can start
// the whole remediator in-process.
package remediator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/notifier/dispatch"
	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/engine"
	"github.com/companion/remediator/remediator/kube"
	"github.com/companion/remediator/remediator/playbook"
	"github.com/companion/remediator/remediator/state"
)

// Options are what New needs besides the configuration file. Nil fields
// get the embedded defaults.
type Options struct {
	// ConfigPath is the configuration file; empty means defaults.
	ConfigPath string
	// Listen and DataDir override the configuration when set.
	Listen  string
	DataDir string

	Logger *slog.Logger
	// Registry collects the remediator's metrics (default: a new one with
	// the Go and process collectors).
	Registry *prometheus.Registry
	// Store is the state store (default: bbolt in the data directory).
	Store state.Store
	// Executor carries out actions (default: plan-only).
	Executor action.Executor
	// Notifier tells people (default: log and Console).
	Notifier notifier.Notifier
	// Console receives one line per notification from the default
	// notifier; nil means standard output.
	Console io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// App is one remediator process.
type App struct {
	opts     Options
	logger   *slog.Logger
	registry *prometheus.Registry
	store    state.Store
	engine   *engine.Engine
	cfg      atomic.Pointer[Config]
	reloads  *reloadMetrics
	reloadMu sync.Mutex
	closers  []func() error

	// dispatcher is nil when Options.Notifier replaced it.
	dispatcher *dispatch.Dispatcher

	authFailures prometheus.Counter
}

// New loads the configuration and playbooks and builds the remediator. It
// fails with every configuration and playbook error at once.
func New(ctx context.Context, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	cfg, rules, err := loadAll(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if opts.Listen != "" {
		cfg.Listen = opts.Listen
	}
	if opts.DataDir != "" {
		cfg.DataDir = opts.DataDir
	}
	a := &App{opts: opts, logger: opts.Logger, registry: opts.Registry}
	a.cfg.Store(cfg)
	a.reloads = newReloadMetrics(opts.Registry)
	a.authFailures = promauto.With(opts.Registry).NewCounter(prometheus.CounterOpts{
		Name: "remediator_webhook_auth_failures_total",
		Help: "Requests refused for missing or wrong credentials.",
	})
	a.logger.Info("webhook authentication", "mode", cfg.Webhook.mode())
	a.reloads.success(rules.Playbooks.Len())

	if err := a.openStore(cfg); err != nil {
		return nil, err
	}
	exec := opts.Executor
	if exec == nil {
		if exec, err = a.executor(ctx, cfg); err != nil {
			a.Close()
			return nil, err
		}
	}
	n := opts.Notifier
	if n == nil {
		out := opts.Console
		if out == nil {
			out = os.Stdout
		}
		d, err := dispatch.New(cfg.Notify, a.store, a.logger, opts.Registry, nil)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("notifications: %w", err)
		}
		a.dispatcher = d
		a.closers = append(a.closers, d.Close)
		n = notifier.Multi{&notifier.Log{Logger: a.logger, Out: out}, d}
	}
	eo := engineOptions(cfg, opts)
	_, eo.TrackPending = a.store.(*state.Bolt)
	a.engine = engine.New(a.logger, a.store, exec, n, opts.Registry, rules, eo)
	return a, nil
}

func engineOptions(cfg *Config, opts Options) engine.Options {
	eo := engine.Options{
		QueueSize: cfg.Queue.Size,
		Workers:   cfg.Queue.Workers,
		Now:       opts.Now,
	}
	if cfg.Prometheus.URL != "" {
		eo.Query = promQuery(cfg.Prometheus.URL)
	}
	return eo
}

// rules builds what a reload swaps in: playbooks, namespaces and the
// global guards.
func rules(cfg *Config, set *playbook.Set) *engine.Rules {
	r := &engine.Rules{
		Playbooks:  set,
		Namespaces: cfg.NamespaceSet(),
		DryRun:     cfg.DryRun,
		Breaker: state.Budget{
			MaxRuns: cfg.Breaker.MaxRuns,
			Window:  time.Duration(cfg.Breaker.Window),
		},
	}
	for _, w := range cfg.Maintenance {
		r.Maintenance = append(r.Maintenance, engine.Window{
			Name: w.Name, Start: w.Start.Time, End: w.End.Time, Namespaces: w.Namespaces,
		})
	}
	return r
}

// executor returns the Kubernetes executor when a cluster answers, and the
// plan-only executor, with a loud warning, when none does.
func (a *App) executor(ctx context.Context, cfg *Config) (action.Executor, error) {
	why := "plan_only is set in the configuration"
	if !cfg.PlanOnly {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := kube.Probe(pctx, cfg.Kubernetes)
		cancel()
		if err == nil {
			exec, err := kube.New(cfg.Kubernetes, a.logger, a.store)
			if err != nil {
				return nil, fmt.Errorf("kubernetes executor: %w", err)
			}
			a.logger.Info("acting on the kubernetes cluster", "executor", exec.Name())
			return exec, nil
		}
		why = err.Error()
	}
	a.logger.Warn("PLAN-ONLY MODE: the remediator records what it would do and changes nothing",
		"reason", why)
	return &action.PlanOnly{}, nil
}

func (a *App) openStore(cfg *Config) error {
	if a.opts.Store != nil {
		a.store = a.opts.Store
		return nil
	}
	if cfg.Store.Redis != nil {
		st, err := state.NewRedis(*cfg.Store.Redis)
		if err != nil {
			return fmt.Errorf("state store: %w", err)
		}
		a.store = st
		a.closers = append(a.closers, st.Close)
		a.logger.Info("state store", "type", "redis", "addr", cfg.Store.Redis.Addr)
		return nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(cfg.DataDir, "remediator.db")
	st, err := state.OpenBolt(path, state.WithLogger(a.logger))
	if err != nil {
		return fmt.Errorf("open state store %s: %w", path, err)
	}
	a.store = st
	a.closers = append(a.closers, st.Close)
	return nil
}

// loadAll reads the configuration and the playbooks it names, the same way
// for serve, check and reload.
func loadAll(path string) (*Config, *engine.Rules, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	set, err := playbook.Load(cfg.PlaybookPatterns()...)
	if err != nil {
		return nil, nil, err
	}
	if errs := crossCheck(cfg, set); len(errs) > 0 {
		return nil, nil, errs
	}
	return cfg, rules(cfg, set), nil
}

// crossCheck finds what the playbooks need from the configuration: a
// Prometheus for verify queries, and the escalation chains they name.
func crossCheck(cfg *Config, set *playbook.Set) playbook.Errors {
	var errs playbook.Errors
	for _, pb := range set.All() {
		if pb.Escalation != "" {
			if _, ok := cfg.Notify.Escalation.Chains[pb.Escalation]; !ok {
				errs = append(errs, playbook.Error{File: pb.File, Line: pb.Line,
					Msg: fmt.Sprintf("escalation chain %q is not defined in notify.escalation.chains",
						pb.Escalation)})
			}
		}
		for _, st := range pb.Steps {
			if st.Query != "" && cfg.Prometheus.URL == "" {
				errs = append(errs, playbook.Error{File: pb.File, Line: st.Line,
					Msg: fmt.Sprintf("step %s queries Prometheus, but the configuration has no prometheus.url", st.Name)})
			}
		}
	}
	return errs
}

// Check validates the configuration and playbooks exactly as serve loads
// them, reads the notification secrets as serve would, and returns the
// playbook set.
func Check(path string) (*Config, *playbook.Set, error) {
	cfg, rules, err := loadAll(path)
	if err != nil {
		return nil, nil, err
	}
	d, err := dispatch.New(cfg.Notify, state.NewMemory(),
		slog.New(slog.DiscardHandler), prometheus.NewRegistry(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("notifications: %w", err)
	}
	if err := d.Close(); err != nil {
		return nil, nil, fmt.Errorf("notifications: %w", err)
	}
	return cfg, rules.Playbooks, nil
}

// Engine returns the engine, for tests and simulate.
func (a *App) Engine() *engine.Engine { return a.engine }

// Store returns the state store.
func (a *App) Store() state.Store { return a.store }

// Config returns the configuration in force.
func (a *App) Config() *Config { return a.cfg.Load() }

// Reload reads the configuration and playbooks again and swaps the new
// playbooks and namespace allow-list in atomically. On any error the old
// ones stay in force. SIGHUP and POST /-/reload both call it.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg, r, err := loadAll(a.opts.ConfigPath)
	if err != nil {
		a.reloads.failure()
		a.logger.ErrorContext(ctx, "reload failed, keeping the previous playbooks", "err", err)
		return err
	}
	old := a.cfg.Load()
	cfg.Listen, cfg.DataDir = old.Listen, old.DataDir
	if stale := restartOnly(old, cfg); len(stale) > 0 {
		a.logger.WarnContext(ctx, "reload keeps the old values of settings that need a restart",
			"settings", strings.Join(stale, ","))
	}
	a.engine.SetRules(r)
	a.cfg.Store(cfg)
	a.reloads.success(r.Playbooks.Len())
	a.logger.InfoContext(ctx, "reloaded", "playbooks", r.Playbooks.Len(),
		"dry_run", r.DryRun, "maintenance_windows", len(r.Maintenance))
	return nil
}

// restartOnly names the settings that differ between old and new but only
// take effect at start: the queue, the state store, the cluster, Prometheus
// and notifications.
func restartOnly(old, cfg *Config) []string {
	var out []string
	for name, same := range map[string]bool{
		"queue":      old.Queue == cfg.Queue,
		"store":      reflect.DeepEqual(old.Store, cfg.Store),
		"kubernetes": old.Kubernetes == cfg.Kubernetes,
		"plan_only":  old.PlanOnly == cfg.PlanOnly,
		"prometheus": old.Prometheus == cfg.Prometheus,
		"notify":     reflect.DeepEqual(old.Notify, cfg.Notify),
	} {
		if !same {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Start recovers runs a previous process left unfinished and starts the
// engine's workers.
func (a *App) Start(ctx context.Context) {
	if _, ok := a.store.(*state.Bolt); ok {
		// Only a single-process store can tell an interrupted run from one
		// that another replica is running.
		if n, err := a.engine.RecoverInterrupted(ctx); err != nil {
			a.logger.ErrorContext(ctx, "recover interrupted runs", "err", err)
		} else if n > 0 {
			a.logger.WarnContext(ctx, "marked runs interrupted by the last stop", "runs", n)
		}
	}
	if a.dispatcher != nil {
		go a.dispatcher.Run(ctx)
	}
	a.engine.Start(ctx)
}

// Run starts the workers and serves HTTP on the configured address until
// ctx ends, then shuts down gracefully.
func (a *App) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.Config().Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.Config().Listen, err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	a.Start(wctx)

	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.logger.Info("listening", "addr", ln.Addr().String(), "executor", a.engine.Executor().Name())

	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	a.logger.Info("shutting down: finishing requests and running steps")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	stopWorkers()
	a.engine.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}

// Close releases the state store and whatever else New opened.
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	return errors.Join(errs...)
}
