package state

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// harness is one store under test and the means to act on what it stands
// on.
type harness struct {
	store Store
	// advance moves the time that claim and lock expiry is measured by.
	advance func(time.Duration)
	// reopen closes the store and opens it again on the same data; nil for
	// a store that keeps nothing.
	reopen func(t *testing.T) Store
	// down makes the backing store unreachable.
	down func(t *testing.T)
}

// backend opens a fresh, empty store for one behaviour.
type backend struct {
	name string
	// persistent marks stores that keep their data when reopened.
	persistent bool
	open       func(t *testing.T) *harness
}

func backends() []backend {
	return []backend{
		{name: "memory", open: openMemoryHarness},
		{name: "bolt", persistent: true, open: openBoltHarness},
		{name: "redis", persistent: true, open: openRedisHarness},
	}
}

func openMemoryHarness(t *testing.T) *harness {
	clock := newTestClock()
	m := NewMemory(WithClock(clock.Now))
	t.Cleanup(func() { _ = m.Close() })
	return &harness{
		store:   m,
		advance: clock.Add,
		down:    func(*testing.T) { require.NoError(t, m.Close()) },
	}
}

// reopenable builds the harness of a store that keeps its data: reopen
// closes the store and calls open again, and down closes the store unless
// another way is given. open registers its own cleanup.
func reopenable(
	t *testing.T,
	open func() Store,
	advance func(time.Duration),
	down func(*testing.T),
) *harness {
	h := &harness{store: open(), advance: advance, down: down}
	h.reopen = func(t *testing.T) Store {
		require.NoError(t, h.store.Close())
		h.store = open()
		return h.store
	}
	if h.down == nil {
		h.down = func(t *testing.T) { require.NoError(t, h.store.Close()) }
	}
	return h
}

// testClock is a clock that moves only when told to.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// t0 is the time Admit tests start from.
var t0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

// shortTTL is short enough that real Redis expiry keeps the tests fast and
// long enough that a slow race-enabled run does not see it pass early.
const shortTTL = 500 * time.Millisecond

type behaviour struct {
	name string
	// persistent marks behaviours that need harness.reopen.
	persistent bool
	run        func(t *testing.T, h *harness)
}

func TestConformance(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range behaviours() {
				if c.persistent && !b.persistent {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, b.open(t))
				})
			}
		})
	}
}

func behaviours() []behaviour {
	return []behaviour{
		{name: "claim/first wins", run: testClaimFirstWins},
		{name: "claim/one winner among concurrent claimers", run: testClaimConcurrent},
		{name: "claim/release lets it be won again", run: testClaimRelease},
		{name: "claim/expires after ttl", run: testClaimExpiry},
		{name: "claim/rejects bad arguments", run: testClaimBadArgs},
		{name: "admit/cooldown", run: testAdmitCooldown},
		{name: "admit/budget", run: testAdmitBudget},
		{name: "admit/window slides", run: testAdmitWindowSlides},
		{name: "admit/targets are separate", run: testAdmitTargets},
		{name: "admit/concurrent admits keep the budget", run: testAdmitConcurrent},
		{name: "admit/no limits", run: testAdmitNoLimits},
		{name: "admit/budgets of different lengths share runs", run: testAdmitMixedBudgets},
		{name: "admit/rejects bad budgets", run: testAdmitBadBudget},
		{name: "lock/exclusive", run: testLockExclusive},
		{name: "lock/one winner among concurrent lockers", run: testLockConcurrent},
		{name: "lock/expires after ttl", run: testLockExpiry},
		{name: "lock/unlock checks owner", run: testUnlockOwner},
		{name: "incident/save and get", run: testIncidentSaveGet},
		{name: "incident/list newest first", run: testIncidentList},
		{name: "kv/put get delete list", run: testKV},
		{name: "restart/state survives", persistent: true, run: testRestart},
		{name: "down/errors wrap ErrUnavailable", run: testDown},
	}
}

func testClaimFirstWins(t *testing.T, h *harness) {
	ctx := t.Context()
	won, err := h.store.Claim(ctx, "fp1/start", time.Hour)
	require.NoError(t, err)
	require.True(t, won, "first claim")

	won, err = h.store.Claim(ctx, "fp1/start", time.Hour)
	require.NoError(t, err)
	require.False(t, won, "second claim of the same key")

	won, err = h.store.Claim(ctx, "fp2/start", time.Hour)
	require.NoError(t, err)
	require.True(t, won, "claim of another key")
}

// concurrently runs fn from n goroutines at once and counts how often it
// returned true.
func concurrently(t *testing.T, n int, fn func(i int) (bool, error)) int {
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			ok, err := fn(i)
			if err != nil {
				errs <- err
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return int(wins.Load())
}

func testClaimConcurrent(t *testing.T, h *harness) {
	ctx := t.Context()
	wins := concurrently(t, 50, func(int) (bool, error) {
		return h.store.Claim(ctx, "fp/concurrent", time.Hour)
	})
	require.Equal(t, 1, wins)
}

func testClaimRelease(t *testing.T, h *harness) {
	ctx := t.Context()
	won, err := h.store.Claim(ctx, "fp/release", time.Hour)
	require.NoError(t, err)
	require.True(t, won)

	require.NoError(t, h.store.Release(ctx, "fp/release"))
	won, err = h.store.Claim(ctx, "fp/release", time.Hour)
	require.NoError(t, err)
	require.True(t, won, "claim after release")

	require.NoError(t, h.store.Release(ctx, "never-claimed"), "release of an unknown key")
}

func testClaimExpiry(t *testing.T, h *harness) {
	ctx := t.Context()
	won, err := h.store.Claim(ctx, "fp/expiry", shortTTL)
	require.NoError(t, err)
	require.True(t, won)

	won, err = h.store.Claim(ctx, "fp/expiry", shortTTL)
	require.NoError(t, err)
	require.False(t, won, "claim before the ttl passed")

	h.advance(shortTTL + 100*time.Millisecond)
	won, err = h.store.Claim(ctx, "fp/expiry", shortTTL)
	require.NoError(t, err)
	require.True(t, won, "claim after the ttl passed")
}

func testClaimBadArgs(t *testing.T, h *harness) {
	ctx := t.Context()
	_, err := h.store.Claim(ctx, "", time.Hour)
	require.ErrorContains(t, err, "empty key")
	_, err = h.store.Claim(ctx, "k", 0)
	require.ErrorContains(t, err, "ttl")
	require.NotErrorIs(t, err, ErrUnavailable, "a caller's mistake is not an outage")
}

// admitAt calls Admit at t0+offset and fails the test on error.
func admitAt(t *testing.T, s Store, target string, offset time.Duration, b Budget) Admission {
	t.Helper()
	adm, err := s.Admit(t.Context(), target, t0.Add(offset), b)
	require.NoError(t, err)
	return adm
}

func testAdmitCooldown(t *testing.T, h *harness) {
	b := Budget{Cooldown: 10 * time.Minute}
	require.True(t, admitAt(t, h.store, "shop/checkout", 0, b).Allowed)

	got := admitAt(t, h.store, "shop/checkout", 3*time.Minute, b)
	require.Equal(t, Admission{Reason: ReasonCooldown, Until: t0.Add(10 * time.Minute)}, got)

	// The refused attempt is not a run: the cooldown still ends at 10m.
	require.True(t, admitAt(t, h.store, "shop/checkout", 10*time.Minute, b).Allowed)
	got = admitAt(t, h.store, "shop/checkout", 19*time.Minute, b)
	require.Equal(t, Admission{Reason: ReasonCooldown, Until: t0.Add(20 * time.Minute)}, got)
}

func testAdmitBudget(t *testing.T, h *harness) {
	b := Budget{MaxRuns: 3, Window: time.Hour}
	for _, at := range []time.Duration{0, time.Minute, 2 * time.Minute} {
		require.True(t, admitAt(t, h.store, "shop/cart", at, b).Allowed, "run at %s", at)
	}
	got := admitAt(t, h.store, "shop/cart", 5*time.Minute, b)
	require.Equal(t, Admission{Reason: ReasonBudget, Until: t0.Add(time.Hour)}, got)

	// A smaller budget frees up only when enough runs have left the window.
	got = admitAt(t, h.store, "shop/cart", 5*time.Minute, Budget{MaxRuns: 2, Window: time.Hour})
	require.Equal(t, Admission{Reason: ReasonBudget, Until: t0.Add(61 * time.Minute)}, got)
}

func testAdmitWindowSlides(t *testing.T, h *harness) {
	b := Budget{MaxRuns: 2, Window: time.Hour, Cooldown: time.Minute}
	require.True(t, admitAt(t, h.store, "shop/api", 0, b).Allowed)
	require.True(t, admitAt(t, h.store, "shop/api", 30*time.Minute, b).Allowed)

	got := admitAt(t, h.store, "shop/api", 59*time.Minute, b)
	require.Equal(t, Admission{Reason: ReasonBudget, Until: t0.Add(time.Hour)}, got)

	// At exactly one hour the first run leaves the window.
	require.True(t, admitAt(t, h.store, "shop/api", time.Hour, b).Allowed)
	got = admitAt(t, h.store, "shop/api", 62*time.Minute, b)
	require.Equal(t, Admission{Reason: ReasonBudget, Until: t0.Add(90 * time.Minute)}, got)
	require.True(t, admitAt(t, h.store, "shop/api", 90*time.Minute, b).Allowed)
}

func testAdmitTargets(t *testing.T, h *harness) {
	b := Budget{Cooldown: time.Hour, MaxRuns: 1, Window: time.Hour}
	require.True(t, admitAt(t, h.store, "shop/a", 0, b).Allowed)
	require.True(t, admitAt(t, h.store, "shop/b", 0, b).Allowed)
	require.False(t, admitAt(t, h.store, "shop/a", time.Second, b).Allowed)
}

func testAdmitConcurrent(t *testing.T, h *harness) {
	ctx := t.Context()
	b := Budget{MaxRuns: 3, Window: time.Hour}
	wins := concurrently(t, 50, func(i int) (bool, error) {
		adm, err := h.store.Admit(ctx, "shop/busy", t0.Add(time.Duration(i)*time.Second), b)
		return adm.Allowed, err
	})
	require.Equal(t, 3, wins)
}

func testAdmitNoLimits(t *testing.T, h *harness) {
	for i := range 5 {
		require.True(t, admitAt(t, h.store, "shop/free", time.Duration(i), Budget{}).Allowed)
	}
}

func testAdmitMixedBudgets(t *testing.T, h *harness) {
	short := Budget{Cooldown: 5 * time.Minute}
	for _, at := range []time.Duration{0, 10 * time.Minute, 20 * time.Minute} {
		require.True(t, admitAt(t, h.store, "shop/mixed", at, short).Allowed, "run at %s", at)
	}
	// A longer budget on the same target still counts the runs that the
	// short one no longer needs.
	long := Budget{MaxRuns: 3, Window: time.Hour}
	got := admitAt(t, h.store, "shop/mixed", 30*time.Minute, long)
	require.Equal(t, Admission{Reason: ReasonBudget, Until: t0.Add(time.Hour)}, got)

	// Runs without limits are runs too.
	require.True(t, admitAt(t, h.store, "shop/mixed", 40*time.Minute, Budget{}).Allowed)
	got = admitAt(t, h.store, "shop/mixed", 41*time.Minute, short)
	require.Equal(t, Admission{Reason: ReasonCooldown, Until: t0.Add(45 * time.Minute)}, got)
}

func testAdmitBadBudget(t *testing.T, h *harness) {
	cases := map[string]Budget{
		"negative cooldown":   {Cooldown: -time.Second},
		"runs without window": {MaxRuns: 2},
	}
	for name, b := range cases {
		_, err := h.store.Admit(t.Context(), "shop/x", t0, b)
		require.Error(t, err, name)
		require.NotErrorIs(t, err, ErrUnavailable, name)
	}
	_, err := h.store.Admit(t.Context(), "", t0, Budget{})
	require.ErrorContains(t, err, "empty target")
}

func testLockExclusive(t *testing.T, h *harness) {
	ctx := t.Context()
	ok, err := h.store.Lock(ctx, "deploy/shop/checkout", "replica-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "first lock")

	ok, err = h.store.Lock(ctx, "deploy/shop/checkout", "replica-b", time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "lock held by another owner")

	ok, err = h.store.Lock(ctx, "deploy/shop/checkout", "replica-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "the owner locks again to extend")

	ok, err = h.store.Lock(ctx, "deploy/shop/cart", "replica-b", time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "another key")
}

func testLockConcurrent(t *testing.T, h *harness) {
	ctx := t.Context()
	wins := concurrently(t, 50, func(i int) (bool, error) {
		return h.store.Lock(ctx, "deploy/shop/race", fmt.Sprintf("owner-%d", i), time.Hour)
	})
	require.Equal(t, 1, wins)
}

func testLockExpiry(t *testing.T, h *harness) {
	ctx := t.Context()
	ok, err := h.store.Lock(ctx, "deploy/shop/expiry", "a", shortTTL)
	require.NoError(t, err)
	require.True(t, ok)

	h.advance(shortTTL + 100*time.Millisecond)
	ok, err = h.store.Lock(ctx, "deploy/shop/expiry", "b", time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "lock after the holder's ttl passed")

	// The old owner's unlock must not free the new owner's lock.
	require.NoError(t, h.store.Unlock(ctx, "deploy/shop/expiry", "a"))
	ok, err = h.store.Lock(ctx, "deploy/shop/expiry", "c", time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "lock still held by b")
}

func testUnlockOwner(t *testing.T, h *harness) {
	ctx := t.Context()
	ok, err := h.store.Lock(ctx, "deploy/shop/owner", "a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)

	require.NoError(t, h.store.Unlock(ctx, "deploy/shop/owner", "b"))
	ok, err = h.store.Lock(ctx, "deploy/shop/owner", "b", time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "unlock by a non-owner is ignored")

	require.NoError(t, h.store.Unlock(ctx, "deploy/shop/owner", "a"))
	ok, err = h.store.Lock(ctx, "deploy/shop/owner", "b", time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "lock after the owner unlocked")
}

func sampleIncident(id string, opened time.Time, status string) Incident {
	return Incident{
		ID:          id,
		Fingerprint: "fp-" + id,
		AlertName:   "HighErrorRate",
		Severity:    "critical",
		Labels:      map[string]string{"alertname": "HighErrorRate", "namespace": "shop"},
		Annotations: map[string]string{"summary": "5xx over 5%"},
		StartsAt:    opened.Add(-time.Minute),
		ExternalURL: "http://alertmanager:9093",
		Status:      status,
		OpenedAt:    opened,
	}
}

func testIncidentSaveGet(t *testing.T, h *harness) {
	ctx := t.Context()
	_, found, err := h.store.Incident(ctx, "missing")
	require.NoError(t, err)
	require.False(t, found)

	inc := sampleIncident("inc-1", t0, StatusOpen)
	inc.Runs = []Run{{
		ID: "run-1", Playbook: "high-error-rate", Target: "Deployment/shop/checkout",
		Executor: "plan", Result: "planned", Started: t0, Finished: t0.Add(time.Second),
		Steps: []Step{{
			Name: "restart", Action: "restart", Result: "planned",
			Details: map[string]string{"revision": "7"}, Started: t0,
			Duration: 1500 * time.Millisecond,
		}},
	}}
	require.NoError(t, h.store.SaveIncident(ctx, inc))
	got, found, err := h.store.Incident(ctx, "inc-1")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, inc, got)

	inc.Status = StatusResolved
	inc.ClosedAt = t0.Add(time.Hour)
	require.NoError(t, h.store.SaveIncident(ctx, inc))
	got, _, err = h.store.Incident(ctx, "inc-1")
	require.NoError(t, err)
	require.Equal(t, inc, got, "a second save replaces the incident")

	require.ErrorContains(t, h.store.SaveIncident(ctx, Incident{}), "empty id")
}

func ids(incs []Incident) []string {
	out := make([]string, 0, len(incs))
	for _, inc := range incs {
		out = append(out, inc.ID)
	}
	return out
}

func testIncidentList(t *testing.T, h *harness) {
	ctx := t.Context()
	all, err := h.store.Incidents(ctx, false)
	require.NoError(t, err)
	require.Empty(t, all)

	saves := []Incident{
		sampleIncident("b", t0.Add(2*time.Minute), StatusOpen),
		sampleIncident("a", t0, StatusResolved),
		sampleIncident("d", t0.Add(3*time.Minute), StatusAcknowledged),
		sampleIncident("c", t0.Add(time.Minute), StatusOpen),
	}
	for _, inc := range saves {
		require.NoError(t, h.store.SaveIncident(ctx, inc))
	}
	all, err = h.store.Incidents(ctx, false)
	require.NoError(t, err)
	require.Equal(t, []string{"d", "b", "c", "a"}, ids(all))

	open, err := h.store.Incidents(ctx, true)
	require.NoError(t, err)
	require.Equal(t, []string{"d", "b", "c"}, ids(open))

	// Resolving one drops it from the open list.
	resolved := saves[0]
	resolved.Status = StatusResolved
	require.NoError(t, h.store.SaveIncident(ctx, resolved))
	open, err = h.store.Incidents(ctx, true)
	require.NoError(t, err)
	require.Equal(t, []string{"d", "c"}, ids(open))
}

func testKV(t *testing.T, h *harness) {
	ctx := t.Context()
	s := h.store
	_, found, err := s.Get(ctx, "revisions", "shop/checkout")
	require.NoError(t, err)
	require.False(t, found)

	require.NoError(t, s.Put(ctx, "revisions", "shop/checkout", []byte("7")))
	require.NoError(t, s.Put(ctx, "revisions", "shop/cart", []byte("3")))
	require.NoError(t, s.Put(ctx, "revisions", "shop/empty", nil))
	require.NoError(t, s.Put(ctx, "timers", "shop/checkout", []byte("t")))

	got, found, err := s.Get(ctx, "revisions", "shop/checkout")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, []byte("7"), got)

	got, found, err = s.Get(ctx, "revisions", "shop/empty")
	require.NoError(t, err)
	require.True(t, found, "an empty value is still present")
	require.Empty(t, got)

	require.NoError(t, s.Put(ctx, "revisions", "shop/cart", []byte("4")))
	require.NoError(t, s.Delete(ctx, "revisions", "shop/empty"))
	require.NoError(t, s.Delete(ctx, "revisions", "never-there"))

	list, err := s.List(ctx, "revisions")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"shop/checkout": []byte("7"), "shop/cart": []byte("4")}, list)

	list, err = s.List(ctx, "unknown")
	require.NoError(t, err)
	require.Empty(t, list)

	require.ErrorContains(t, s.Put(ctx, "", "k", nil), "empty bucket or key")
}

func testRestart(t *testing.T, h *harness) {
	ctx := t.Context()
	s := h.store
	won, err := s.Claim(ctx, "fp/restart", time.Hour)
	require.NoError(t, err)
	require.True(t, won)
	b := Budget{Cooldown: time.Hour}
	require.True(t, admitAt(t, s, "shop/restart", 0, b).Allowed)
	ok, err := s.Lock(ctx, "deploy/shop/restart", "a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	inc := sampleIncident("inc-restart", t0, StatusOpen)
	require.NoError(t, s.SaveIncident(ctx, inc))
	require.NoError(t, s.Put(ctx, "revisions", "shop/restart", []byte("9")))

	s = h.reopen(t)

	won, err = s.Claim(ctx, "fp/restart", time.Hour)
	require.NoError(t, err)
	require.False(t, won, "the claim survives")
	require.False(t, admitAt(t, s, "shop/restart", time.Minute, b).Allowed, "the cooldown survives")
	ok, err = s.Lock(ctx, "deploy/shop/restart", "b", time.Hour)
	require.NoError(t, err)
	require.False(t, ok, "the lock survives")
	open, err := s.Incidents(ctx, true)
	require.NoError(t, err)
	require.Equal(t, []Incident{inc}, open, "the open incident survives")
	v, found, err := s.Get(ctx, "revisions", "shop/restart")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, []byte("9"), v)
}

func testDown(t *testing.T, h *harness) {
	h.down(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s := h.store
	calls := map[string]func() error{
		"claim":   func() error { _, err := s.Claim(ctx, "k", time.Hour); return err },
		"release": func() error { return s.Release(ctx, "k") },
		"admit": func() error {
			_, err := s.Admit(ctx, "t", t0, Budget{Cooldown: time.Minute})
			return err
		},
		"lock":          func() error { _, err := s.Lock(ctx, "k", "o", time.Hour); return err },
		"unlock":        func() error { return s.Unlock(ctx, "k", "o") },
		"save incident": func() error { return s.SaveIncident(ctx, sampleIncident("i", t0, StatusOpen)) },
		"incident":      func() error { _, _, err := s.Incident(ctx, "i"); return err },
		"incidents":     func() error { _, err := s.Incidents(ctx, false); return err },
		"put":           func() error { return s.Put(ctx, "b", "k", []byte("v")) },
		"get":           func() error { _, _, err := s.Get(ctx, "b", "k"); return err },
		"delete":        func() error { return s.Delete(ctx, "b", "k") },
		"list":          func() error { _, err := s.List(ctx, "b"); return err },
		"ping":          func() error { return s.Ping(ctx) },
	}
	for name, call := range calls {
		require.ErrorIs(t, call(), ErrUnavailable, name)
	}
}
