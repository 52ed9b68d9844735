package engine

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/playbook"
	"github.com/companion/remediator/remediator/state"
)

// scripted is an executor whose answers the test sets per action; it
// stands in for a cluster only in these engine tests (package kube is
// tested against a real API server).
type scripted struct {
	mu    sync.Mutex
	fail  map[action.Type]error
	calls []action.Request
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) Execute(ctx context.Context, req action.Request) (action.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, req)
	if err := s.fail[req.Action]; err != nil {
		return action.Result{}, err
	}
	return action.Result{Changed: true, DryRun: req.DryRun, Summary: "did " + string(req.Action)}, nil
}

func (s *scripted) actions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		a := string(c.Action)
		if c.DryRun {
			a += "(dry)"
		}
		out = append(out, a)
	}
	return out
}

// events records every notification kind.
type events struct {
	mu    sync.Mutex
	kinds []string
}

func (e *events) Notify(_ context.Context, ev notifier.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := string(ev.Kind)
	if ev.Step != nil {
		k += ":" + ev.Step.Name + "=" + ev.Step.Result
	}
	e.kinds = append(e.kinds, k)
	return nil
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.kinds...)
}

type fixture struct {
	eng   *Engine
	exec  *scripted
	ev    *events
	store *state.Memory
	now   time.Time
	mu    sync.Mutex
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// globalGuards are the reloadable guards of Rules that a test sets.
type globalGuards struct {
	Breaker     state.Budget
	Maintenance []Window
}

func newFixture(t *testing.T, src string, opts Options, gg ...globalGuards) *fixture {
	t.Helper()
	pb, errs := playbook.Parse("test.yml", []byte(src))
	require.Empty(t, errs)
	set, err := playbook.NewSet(pb)
	require.NoError(t, err)
	f := &fixture{exec: &scripted{fail: map[action.Type]error{}}, ev: &events{},
		now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	f.store = state.NewMemory(state.WithClock(f.clock))
	var guards globalGuards
	if len(gg) > 0 {
		guards = gg[0]
	}
	opts.Now = f.clock
	opts.VerifyInterval = 5 * time.Millisecond
	f.eng = New(slog.New(slog.DiscardHandler), f.store, f.exec, f.ev, prometheus.NewRegistry(),
		&Rules{Playbooks: set, Namespaces: map[string]bool{"shop": true},
			Breaker: guards.Breaker, Maintenance: guards.Maintenance}, opts)
	return f
}

func firing(fp string, startsAt time.Time) *Message {
	return &Message{Version: "4", Data: &template.Data{Status: "firing", Alerts: template.Alerts{{
		Status:      "firing",
		Labels:      template.KV{"alertname": "HighErrorRate", "namespace": "shop", "deployment": "web"},
		StartsAt:    startsAt,
		Fingerprint: fp,
	}}}}
}

func resolved(fp string, startsAt time.Time) *Message {
	m := firing(fp, startsAt)
	m.Status, m.Alerts[0].Status = "resolved", "resolved"
	return m
}

// handle judges m and runs every queued job.
func (f *fixture) handle(t *testing.T, m *Message) []Decision {
	t.Helper()
	sum, err := f.eng.Handle(context.Background(), m)
	require.NoError(t, err)
	f.eng.RunPending(context.Background())
	return sum.Decisions
}

func (f *fixture) run(t *testing.T, id string) state.Run {
	t.Helper()
	inc, found, err := f.store.Incident(context.Background(), id)
	require.NoError(t, err)
	require.True(t, found)
	require.NotEmpty(t, inc.Runs)
	return inc.Runs[len(inc.Runs)-1]
}

const basePlaybook = `version: 1
name: web
match: {alertname: HighErrorRate}
target: {kind: Deployment, namespace: '{{ .Labels.namespace }}', name: '{{ .Labels.deployment }}'}
`

func TestGuards(t *testing.T) {
	cases := []struct {
		name       string
		guardsYAML string
		guards     globalGuards
		gap        time.Duration
		wantSecond string
	}{
		{"cooldown refuses a new instance too soon", "guards: {cooldown: 30m}\n", globalGuards{}, 10 * time.Minute,
			ResultSkipped + ":" + ReasonCooldown},
		{"cooldown passed", "guards: {cooldown: 30m}\n", globalGuards{}, 31 * time.Minute, ResultSucceeded},
		{"budget of one run per day", "guards: {max_runs: 1, window: 1d}\n", globalGuards{}, 2 * time.Hour,
			ResultSkipped + ":" + ReasonBudget},
		{"circuit breaker", "", globalGuards{Breaker: state.Budget{MaxRuns: 1, Window: time.Hour}}, time.Minute,
			ResultSkipped + ":" + ReasonBreaker},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, basePlaybook+tc.guardsYAML+"steps: [{action: restart}]\n", Options{}, tc.guards)
			start := f.now
			d := f.handle(t, firing("aaaa", start))
			require.Equal(t, OutcomeMatched, d[0].Outcome)
			require.Equal(t, ResultSucceeded, f.run(t, d[0].Incident).Result)

			f.advance(tc.gap)
			d = f.handle(t, firing("aaaa", start.Add(tc.gap))) // a new instance of the alert
			require.Equal(t, OutcomeMatched, d[0].Outcome)
			run := f.run(t, d[0].Incident)
			got := run.Result
			if run.Result == ResultSkipped {
				got += ":" + strings.SplitN(run.Reason, ":", 2)[0]
			}
			require.Equal(t, tc.wantSecond, got, run.Reason)
		})
	}
}

func TestMaintenanceAndApproval(t *testing.T) {
	t.Run("maintenance window", func(t *testing.T) {
		f := newFixture(t, basePlaybook+"steps: [{action: restart}]\n", Options{},
			globalGuards{Maintenance: []Window{{
				Name: "db-upgrade", Start: time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC),
				End: time.Date(2026, 12, 4, 13, 0, 0, 0, time.UTC), Namespaces: []string{"shop"}}}})
		d := f.handle(t, firing("bbbb", f.now))
		run := f.run(t, d[0].Incident)
		require.Equal(t, ResultSkipped, run.Result)
		require.Contains(t, run.Reason, "db-upgrade")
		require.Empty(t, f.exec.actions())
	})
	t.Run("needs approval", func(t *testing.T) {
		f := newFixture(t, basePlaybook+"guards: {needs_approval: true}\nsteps: [{action: restart}]\n", Options{})
		d := f.handle(t, firing("cccc", f.now))
		require.Equal(t, ResultAwaitingApproval, f.run(t, d[0].Incident).Result)
		require.Empty(t, f.exec.actions())
		require.Equal(t, []string{string(notifier.Opened), string(notifier.NeedsApproval)}, f.ev.list(),
			"the incident opens, so its escalation chain finds an approver")
	})
}

func TestDryRunReachesTheExecutor(t *testing.T) {
	f := newFixture(t, basePlaybook+"guards: {dry_run: true}\nsteps: [{action: restart}, {action: rollback}]\n", Options{})
	f.handle(t, firing("dddd", f.now))
	require.Equal(t, []string{"restart(dry)", "rollback(dry)"}, f.exec.actions())
}

func TestOnFailure(t *testing.T) {
	steps := "steps:\n" +
		"  - {action: restart, on_failure: %s}\n" +
		"  - {action: rollback}\n"
	cases := []struct {
		onFailure   string
		wantResult  string
		wantActions []string
		wantEvent   string
	}{
		{"abort", ResultFailed, []string{"restart"}, string(notifier.Failed)},
		{"continue", ResultSucceeded, []string{"restart", "rollback"}, ""},
		{"escalate", ResultEscalated, []string{"restart"}, string(notifier.Escalate)},
	}
	for _, tc := range cases {
		t.Run(tc.onFailure, func(t *testing.T) {
			f := newFixture(t, basePlaybook+strings.Replace(steps, "%s", tc.onFailure, 1), Options{})
			f.exec.fail[action.Restart] = action.Terminal(errors.New("restart deployment shop/web: deployment is paused"))
			d := f.handle(t, firing("eeee", f.now))
			run := f.run(t, d[0].Incident)
			require.Equal(t, tc.wantResult, run.Result)
			require.Equal(t, tc.wantActions, f.exec.actions())
			require.Contains(t, run.Steps[0].Error, "deployment is paused")
			if tc.wantEvent != "" {
				require.Contains(t, f.ev.list(), tc.wantEvent)
			}
		})
	}
}

// TestVerify runs a verify step that waits for the alert to resolve:
// resolution before the deadline ends the run as succeeded and skips the
// fallback; no resolution fails the step and the fallback runs.
func TestVerify(t *testing.T) {
	src := basePlaybook + `steps:
  - {action: restart}
  - {action: verify, timeout: %s, on_failure: continue}
  - {action: rollback}
`
	t.Run("resolved in time", func(t *testing.T) {
		f := newFixture(t, strings.Replace(src, "%s", "1m", 1), Options{Workers: 1})
		exec := &resolving{scripted: scripted{fail: map[action.Type]error{}}}
		f.eng.exec, f.exec = exec, &exec.scripted
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f.eng.Start(ctx)
		sum, err := f.eng.Handle(ctx, firing("ffff", f.now))
		require.NoError(t, err)
		id := sum.Decisions[0].Incident
		require.Eventually(t, func() bool { return len(f.exec.actions()) == 1 }, 5*time.Second, time.Millisecond)
		_, err = f.eng.Handle(ctx, resolved("ffff", f.now))
		require.NoError(t, err)
		require.Eventually(t, f.eng.Idle, 5*time.Second, time.Millisecond)
		run := f.run(t, id)
		require.Equal(t, ResultSucceeded, run.Result)
		require.Equal(t, []string{"restart"}, f.exec.actions(), "rollback skipped after verification")
		require.Contains(t, f.ev.list(), string(notifier.Verified))
		require.Equal(t, []string{"Deployment shop/web"}, exec.good, "the verified revision is remembered")
		require.Contains(t, f.ev.list(), string(notifier.Resolved))
	})
	t.Run("not resolved", func(t *testing.T) {
		f := newFixture(t, strings.Replace(src, "%s", "50ms", 1), Options{})
		d := f.handle(t, firing("gggg", f.now))
		run := f.run(t, d[0].Incident)
		require.Equal(t, ResultSucceeded, run.Result)
		require.Equal(t, ResultFailed, run.Steps[1].Result)
		require.Contains(t, run.Steps[1].Error, "not verified within 50ms")
		require.Equal(t, []string{"restart", "rollback"}, f.exec.actions())
	})
	t.Run("query under threshold", func(t *testing.T) {
		q := basePlaybook + "steps:\n  - {action: verify, timeout: 1m, query: 'error_ratio', below: 0.05}\n"
		var calls int
		f := newFixture(t, q, Options{Query: func(context.Context, string) (float64, error) {
			calls++
			if calls < 3 {
				return 0.2, nil
			}
			return 0.01, nil
		}})
		d := f.handle(t, firing("hhhh", f.now))
		run := f.run(t, d[0].Incident)
		require.Equal(t, ResultSucceeded, run.Result)
		require.Contains(t, run.Steps[0].Summary, "value 0.01")
	})
}

// TestResolvedBeforeRunStarts resolves an alert while its run still waits
// in the queue: the run starts nothing and the incident is closed.
func TestResolvedBeforeRunStarts(t *testing.T) {
	f := newFixture(t, basePlaybook+"steps: [{action: restart}]\n", Options{})
	ctx := context.Background()
	sum, err := f.eng.Handle(ctx, firing("iiii", f.now))
	require.NoError(t, err)
	_, err = f.eng.Handle(ctx, resolved("iiii", f.now))
	require.NoError(t, err)
	f.eng.RunPending(ctx)
	require.Empty(t, f.exec.actions())
	inc, _, err := f.store.Incident(ctx, sum.Decisions[0].Incident)
	require.NoError(t, err)
	require.Equal(t, state.StatusResolved, inc.Status)
	require.Equal(t, ResultSkipped, inc.Runs[0].Result)
}

// TestTargetLock keeps a run from acting while another run holds the
// target.
func TestTargetLock(t *testing.T) {
	f := newFixture(t, basePlaybook+"steps: [{action: restart}]\n", Options{})
	ok, err := f.store.Lock(context.Background(), "target/Deployment/shop/web", "other-run", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	d := f.handle(t, firing("jjjj", f.now))
	run := f.run(t, d[0].Incident)
	require.Equal(t, ResultSkipped, run.Result)
	require.Contains(t, run.Reason, ReasonLocked)
	require.Empty(t, f.exec.actions())
}

func TestQueueFullReleasesTheClaim(t *testing.T) {
	f := newFixture(t, basePlaybook+"steps: [{action: restart}]\n", Options{QueueSize: 1})
	ctx := context.Background()
	_, err := f.eng.Handle(ctx, firing("k1", f.now))
	require.NoError(t, err)
	_, err = f.eng.Handle(ctx, firing("k2", f.now))
	require.ErrorIs(t, err, ErrQueueFull)
	f.eng.RunPending(ctx)
	d := f.handle(t, firing("k2", f.now))
	require.Equal(t, OutcomeMatched, d[0].Outcome, "the retry wins the released claim")
}

// resolving is a scripted executor that also resolves pods to their
// Deployment and remembers good revisions.
type resolving struct {
	scripted
	good []string
}

func (r *resolving) Resolve(_ context.Context, t action.Target) (action.Target, error) {
	if t.Pod == "gone" {
		return t, action.Terminal(errors.New(`pods "gone" not found`))
	}
	name, _, _ := strings.Cut(t.Pod, "-")
	return action.Target{Kind: action.KindDeployment, Namespace: t.Namespace, Name: name}, nil
}

func (r *resolving) MarkGood(_ context.Context, t action.Target) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.good = append(r.good, t.String())
	return "7", nil
}

// TestPodTargetsShareTheWorkloadsGuards sends alerts about two pods of one
// Deployment: the cooldown belongs to the Deployment, so the second is
// refused; a verified run marks the revision good.
func TestPodTargetsShareTheWorkloadsGuards(t *testing.T) {
	src := `version: 1
name: pods
match: {alertname: HighErrorRate}
target: {namespace: '{{ .Labels.namespace }}', pod: '{{ .Labels.pod }}'}
guards: {cooldown: 1h}
steps: [{action: restart}, {action: verify, timeout: 20ms, on_failure: continue}]
`
	f := newFixture(t, src, Options{})
	exec := &resolving{scripted: scripted{fail: map[action.Type]error{}}}
	f.eng.exec = exec
	alert := func(fp, pod string) *Message {
		m := firing(fp, f.now)
		m.Alerts[0].Labels["pod"] = pod
		return m
	}
	d := f.handle(t, alert("p1", "web-abc12"))
	run := f.run(t, d[0].Incident)
	require.Equal(t, "Deployment shop/web", run.Target)
	require.Equal(t, []string{"restart"}, exec.actions())

	d = f.handle(t, alert("p2", "web-def34"))
	run = f.run(t, d[0].Incident)
	require.Equal(t, ResultSkipped, run.Result)
	require.Contains(t, run.Reason, ReasonCooldown)

	d = f.handle(t, alert("p3", "gone"))
	run = f.run(t, d[0].Incident)
	require.Equal(t, ResultFailed, run.Result)
	require.Contains(t, run.Reason, `find the workload of pod shop/gone`)
	require.Empty(t, exec.good, "no verify succeeded yet")
}

// TestRecoverInterruptedTellsPeople leaves a run marked running, as a crash
// would, and recovers: the run is marked interrupted and a failed event
// goes out, since the target may have been changed half way.
func TestRecoverInterruptedTellsPeople(t *testing.T) {
	f := newFixture(t, basePlaybook+"steps: [{action: restart}]\n", Options{})
	ctx := context.Background()
	require.NoError(t, f.store.SaveIncident(ctx, state.Incident{
		ID: "inc1", AlertName: "HighErrorRate", Status: state.StatusOpen,
		Runs: []state.Run{{ID: "run1", Playbook: "web", Result: ResultRunning}},
	}))
	n, err := f.eng.RecoverInterrupted(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, ResultInterrupted, f.run(t, "inc1").Result)
	require.Equal(t, []string{string(notifier.Failed)}, f.ev.list())
}
