package escalation

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/notifier/internal/fakeclock"
	"github.com/companion/remediator/remediator/state"
)

// recorder is a Deliver that remembers every page.
type recorder struct {
	mu    sync.Mutex
	pages []Page
	err   error
}

func (r *recorder) deliver(_ context.Context, p Page) Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pages = append(r.pages, p)
	if r.err != nil {
		return Outcome{Err: r.err}
	}
	return Outcome{Emailed: p.Email}
}

// steps returns "incident/chain/step" of each page, in order.
func (r *recorder) steps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.pages {
		out = append(out, p.Incident.ID+"/"+p.Chain+"/"+string(rune('1'+p.Step)))
	}
	return out
}

// monday9 is a Monday at 09:00 UTC.
var monday9 = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func testConfig() Config {
	c := Config{Teams: map[string]Recipients{
		TeamOperations:  {Slack: []string{"S0OPS"}, Email: []string{"ops@example.com"}},
		TeamEngineering: {Email: []string{"eng@example.com"}},
		TeamManager:     {Slack: []string{"U0BOSS"}, Email: []string{"boss@example.com"}},
	}}
	c.ApplyDefaults()
	return c
}

func newEngine(t *testing.T, store notifier.Store, clock notifier.Clock) (*Engine, *prometheus.CounterVec) {
	t.Helper()
	cfg := testConfig()
	require.NoError(t, cfg.Validate())
	steps := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "steps_total"},
		[]string{"chain", "result"})
	e, err := New(cfg, store, clock, slog.New(slog.DiscardHandler), steps)
	require.NoError(t, err)
	return e, steps
}

func incident(id, severity string, opened time.Time) notifier.Incident {
	return notifier.Incident{ID: id, AlertName: "HighErrorRate", Severity: severity, OpenedAt: opened}
}

func TestChainsFollowSeverity(t *testing.T) {
	tests := []struct {
		name     string
		inc      notifier.Incident
		chain    string
		firstAll bool
	}{
		{name: "critical tells everyone at once", inc: incident("a", "critical", monday9),
			chain: "p0", firstAll: true},
		{name: "high is p1", inc: incident("b", "high", monday9), chain: "p1"},
		{name: "warning is p2", inc: incident("c", "Warning", monday9), chain: "p2"},
		{name: "info is p3", inc: incident("d", "info", monday9), chain: "p3"},
		{name: "unknown severity takes the default", inc: incident("e", "weird", monday9), chain: "p2"},
		{name: "playbook names the chain",
			inc:   notifier.Incident{ID: "f", Severity: "info", Chain: "p1", OpenedAt: monday9},
			chain: "p1"},
		{name: "unknown playbook chain falls back to severity",
			inc:   notifier.Incident{ID: "g", Severity: "critical", Chain: "nope", OpenedAt: monday9},
			chain: "p0", firstAll: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := fakeclock.New(monday9)
			e, _ := newEngine(t, state.NewMemory(), clock)
			ctx := context.Background()
			started, err := e.Start(ctx, tt.inc)
			require.NoError(t, err)
			require.True(t, started)
			rec := &recorder{}
			n, err := e.Tick(ctx, rec.deliver)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.Len(t, rec.pages, 1)
			p := rec.pages[0]
			require.Equal(t, tt.chain, p.Chain)
			if tt.firstAll {
				require.Equal(t, []string{TeamOperations, TeamEngineering, TeamManager}, p.Teams)
				require.Equal(t, []string{"ops@example.com", "eng@example.com", "boss@example.com"},
					p.Email)
				require.Equal(t, []string{"S0OPS", "U0BOSS"}, p.Slack)
			} else {
				require.Equal(t, []string{TeamOperations}, p.Teams)
			}
		})
	}
}

func TestChainTimingAndAck(t *testing.T) {
	clock := fakeclock.New(monday9)
	e, steps := newEngine(t, state.NewMemory(), clock)
	ctx := context.Background()
	rec := &recorder{}
	tick := func(at time.Duration) {
		t.Helper()
		clock.Set(monday9.Add(at))
		_, err := e.Tick(ctx, rec.deliver)
		require.NoError(t, err)
	}
	_, err := e.Start(ctx, incident("inc-1", "high", monday9))
	require.NoError(t, err)
	started, err := e.Start(ctx, incident("inc-1", "high", monday9))
	require.NoError(t, err)
	require.False(t, started, "a repeated Opened starts nothing")

	tick(0)
	require.Equal(t, []string{"inc-1/p1/1"}, rec.steps())
	tick(59 * time.Minute)
	require.Len(t, rec.pages, 1, "engineering is asked after an hour, not before")
	tick(time.Hour)
	require.Equal(t, []string{"inc-1/p1/1", "inc-1/p1/2"}, rec.steps())
	tick(time.Hour + 30*time.Minute)
	require.Len(t, rec.pages, 2)

	got, ok, err := e.Get(ctx, "inc-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []string{"ops@example.com", "eng@example.com"}, got.Emailed)
	require.Len(t, got.Sent, 2)
	require.Equal(t, ResultSent, got.Sent[1].Result)
	require.Equal(t, 1, e.Open())

	stopped, ok, err := e.Stop(ctx, "inc-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, got.Emailed, stopped.Emailed)
	tick(10 * time.Hour)
	require.Len(t, rec.pages, 2, "the manager is never asked after the ack")
	require.Equal(t, 0, e.Open())
	started, err = e.Start(ctx, incident("inc-1", "high", monday9))
	require.NoError(t, err)
	require.False(t, started, "a stopped chain does not start again")
	_, ok, err = e.Stop(ctx, "inc-1")
	require.NoError(t, err)
	require.False(t, ok)
	require.InDelta(t, 2, testutil.ToFloat64(steps.WithLabelValues("p1", ResultSent)), 0)
}

func TestLateStartSendsOverdueStepsOnce(t *testing.T) {
	clock := fakeclock.New(monday9.Add(3 * time.Hour))
	e, _ := newEngine(t, state.NewMemory(), clock)
	ctx := context.Background()
	_, err := e.Start(ctx, incident("inc-1", "high", monday9))
	require.NoError(t, err)
	rec := &recorder{}
	_, err = e.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	_, err = e.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Equal(t, []string{"inc-1/p1/1", "inc-1/p1/2", "inc-1/p1/3"}, rec.steps())
}

func TestExpedite(t *testing.T) {
	clock := fakeclock.New(monday9)
	e, _ := newEngine(t, state.NewMemory(), clock)
	ctx := context.Background()
	rec := &recorder{}
	_, err := e.Start(ctx, incident("inc-1", "warning", monday9))
	require.NoError(t, err)
	_, err = e.Tick(ctx, rec.deliver)
	require.NoError(t, err)

	clock.Set(monday9.Add(10 * time.Minute))
	require.NoError(t, e.Expedite(ctx, "inc-1"))
	_, err = e.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Equal(t, []string{"inc-1/p2/1", "inc-1/p2/2"}, rec.steps(),
		"engineering is asked now instead of after 4h")
	clock.Set(monday9.Add(5 * time.Hour))
	_, err = e.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Len(t, rec.pages, 2, "the manager keeps the 8h schedule")
	require.ErrorIs(t, e.Expedite(ctx, "missing"), ErrNotFound)
}

func TestFailedStepIsRecordedNotRepeated(t *testing.T) {
	clock := fakeclock.New(monday9)
	e, steps := newEngine(t, state.NewMemory(), clock)
	ctx := context.Background()
	rec := &recorder{err: errors.New("smtp down")}
	_, err := e.Start(ctx, incident("inc-1", "high", monday9))
	require.NoError(t, err)
	_, err = e.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	_, err = e.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Len(t, rec.pages, 1)
	got, _, err := e.Get(ctx, "inc-1")
	require.NoError(t, err)
	require.Equal(t, ResultFailed, got.Sent[0].Result)
	require.Equal(t, "smtp down", got.Sent[0].Err)
	require.Empty(t, got.Emailed)
	require.InDelta(t, 1, testutil.ToFloat64(steps.WithLabelValues("p1", ResultFailed)), 0)
}

// TestRestartMidChain closes the store between two engines, as a restart
// of the remediator does.
func TestRestartMidChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := context.Background()
	clock := fakeclock.New(monday9)
	rec := &recorder{}

	store, err := state.OpenBolt(path)
	require.NoError(t, err)
	first, _ := newEngine(t, store, clock)
	_, err = first.Start(ctx, incident("inc-1", "high", monday9))
	require.NoError(t, err)
	clock.Set(monday9.Add(time.Hour))
	_, err = first.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Equal(t, []string{"inc-1/p1/1", "inc-1/p1/2"}, rec.steps())
	require.NoError(t, store.Close())

	store, err = state.OpenBolt(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	second, _ := newEngine(t, store, clock)
	n, err := second.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the pending chain survived")
	require.Len(t, rec.pages, 2, "nothing is sent twice")
	clock.Set(monday9.Add(2 * time.Hour))
	_, err = second.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Equal(t, []string{"inc-1/p1/1", "inc-1/p1/2", "inc-1/p1/3"}, rec.steps())
}

// TestCrashAfterClaim loses the step an engine claimed and never sent: it
// is marked interrupted and not sent again.
func TestCrashAfterClaim(t *testing.T) {
	store := state.NewMemory()
	ctx := context.Background()
	clock := fakeclock.New(monday9)
	first, _ := newEngine(t, store, clock)
	_, err := first.Start(ctx, incident("inc-1", "high", monday9))
	require.NoError(t, err)
	_, won, ok, err := first.claimNext(ctx, "inc-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, won)

	clock.Set(monday9.Add(10 * time.Minute))
	second, steps := newEngine(t, store, clock)
	rec := &recorder{}
	_, err = second.Tick(ctx, rec.deliver)
	require.NoError(t, err)
	require.Empty(t, rec.pages)
	got, _, err := second.Get(ctx, "inc-1")
	require.NoError(t, err)
	require.Equal(t, ResultInterrupted, got.Sent[0].Result)
	require.InDelta(t, 1, testutil.ToFloat64(steps.WithLabelValues("p1", ResultInterrupted)), 0)
}

func TestReplicasSendEachStepOnce(t *testing.T) {
	store := state.NewMemory()
	ctx := context.Background()
	clock := fakeclock.New(monday9)
	a, _ := newEngine(t, store, clock)
	b, _ := newEngine(t, store, clock)
	for _, id := range []string{"x", "y", "z"} {
		_, err := a.Start(ctx, incident(id, "critical", monday9))
		require.NoError(t, err)
	}
	rec := &recorder{}
	var wg sync.WaitGroup
	for _, e := range []*Engine{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Tick(ctx, rec.deliver)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	require.ElementsMatch(t, []string{"x/p0/1", "y/p0/1", "z/p0/1"}, rec.steps())
}

func TestBusinessAndQuietHours(t *testing.T) {
	cfg := testConfig()
	cfg.Timezone = "Europe/Berlin"
	cal, err := newCalendar(cfg)
	require.NoError(t, err)
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	at := func(day, hour, minute int) time.Time {
		return time.Date(2026, 12, day, hour, minute, 0, 0, berlin)
	}
	tests := []struct {
		name string
		when string
		in   time.Time
		want time.Time
	}{
		{name: "always is now", when: Always, in: at(5, 3, 0), want: at(5, 3, 0)},
		{name: "business hours hold", when: BusinessHours, in: at(4, 10, 0), want: at(4, 10, 0)},
		{name: "friday evening waits for monday", when: BusinessHours, in: at(4, 18, 30),
			want: at(7, 9, 0)},
		{name: "saturday waits for monday", when: BusinessHours, in: at(5, 12, 0),
			want: at(7, 9, 0)},
		{name: "early morning waits for nine", when: BusinessHours, in: at(8, 6, 0),
			want: at(8, 9, 0)},
		{name: "outside quiet hours", when: OutsideQuietHours, in: at(8, 12, 0), want: at(8, 12, 0)},
		{name: "late evening waits for seven", when: OutsideQuietHours, in: at(8, 23, 15),
			want: at(9, 7, 0)},
		{name: "after midnight waits for seven", when: OutsideQuietHours, in: at(9, 2, 0),
			want: at(9, 7, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cal.hold(tt.in, tt.when)
			require.True(t, tt.want.Equal(got), "want %s, got %s", tt.want, got.In(berlin))
		})
	}
}

func TestP3WaitsForNextBusinessDay(t *testing.T) {
	friday := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	clock := fakeclock.New(friday)
	e, _ := newEngine(t, state.NewMemory(), clock)
	ctx := context.Background()
	rec := &recorder{}
	_, err := e.Start(ctx, incident("inc-1", "info", friday))
	require.NoError(t, err)
	for _, h := range []int{0, 12, 36, 60} {
		clock.Set(friday.Add(time.Duration(h) * time.Hour))
		_, err = e.Tick(ctx, rec.deliver)
		require.NoError(t, err)
		require.Empty(t, rec.pages, "nothing before Monday 09:00, hour %d", h)
	}
	steps := []struct {
		at   time.Time
		want int
	}{
		{at: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), want: 1},
		{at: time.Date(2026, 12, 8, 8, 59, 0, 0, time.UTC), want: 1},
		{at: time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC), want: 2},
		{at: time.Date(2026, 12, 10, 8, 0, 0, 0, time.UTC), want: 2},
		{at: time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC), want: 3},
	}
	for _, st := range steps {
		clock.Set(st.at)
		_, err = e.Tick(ctx, rec.deliver)
		require.NoError(t, err)
		require.Len(t, rec.pages, st.want, "at %s", st.at)
	}
	require.Equal(t, []string{"inc-1/p3/1", "inc-1/p3/2", "inc-1/p3/3"}, rec.steps(),
		"operations Monday, engineering the next business day, the manager two later")
}

func TestMention(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "U0123ABC", want: "<@U0123ABC>"},
		{in: "W0123", want: "<@W0123>"},
		{in: "S0OPS", want: "<!subteam^S0OPS>"},
		{in: "here", want: "<!here>"},
		{in: "#ops", err: "not a Slack user"},
		{in: "u0123", err: "not a Slack user"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Mention(tt.in)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestSeverityKeysMustBeLowerCase refuses severities that could never match:
// alert severities are matched lower-cased.
func TestSeverityKeysMustBeLowerCase(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Severities = map[string]string{"Critical": "p0", "": "p1", "warning": "p1"}
	err := cfg.Validate()
	require.ErrorContains(t, err, "severities.Critical: write severities in lower case")
	require.ErrorContains(t, err, "severities.: write severities in lower case")
	require.NotContains(t, err.Error(), "severities.warning")
}
