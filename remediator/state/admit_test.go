package state

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/remediator/testenv"
)

// TestAdmitStoresAgree drives every store with the same random sequence of
// Admit calls, with budgets that change between calls and times that now
// and then go backwards as a replica's clock might, and requires the bolt
// and Redis stores to decide exactly as the memory store does.
func TestAdmitStoresAgree(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	boltStore, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"),
		WithSweepInterval(10*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = boltStore.Close() })
	redisStore, err := NewRedis(RedisConfig{Addr: testenv.StartRedis(t).Addr})
	require.NoError(t, err)
	t.Cleanup(func() { _ = redisStore.Close() })
	reference := NewMemory()
	others := map[string]Store{"bolt": boltStore, "redis": redisStore}

	rng := rand.New(rand.NewPCG(1, 2))
	budgets := []Budget{
		{Cooldown: 5 * time.Minute},
		{MaxRuns: 3, Window: time.Hour},
		{Cooldown: time.Minute, MaxRuns: 2, Window: 20 * time.Minute},
		{MaxRuns: 1, Window: 10 * time.Minute},
		{},
	}
	at := t0
	allowed := 0
	for i := range 400 {
		target := fmt.Sprintf("shop/t%d", rng.IntN(3))
		b := budgets[rng.IntN(len(budgets))]
		// Mostly forward by up to ten minutes, sometimes back by up to one.
		step := time.Duration(rng.IntN(600)-60) * time.Second
		if rng.IntN(10) == 0 {
			step = 0
		}
		at = at.Add(step)

		want, err := reference.Admit(ctx, target, at, b)
		require.NoError(t, err)
		if want.Allowed {
			allowed++
		}
		for name, s := range others {
			got, err := s.Admit(ctx, target, at, b)
			require.NoError(t, err, "%s call %d", name, i)
			require.Equal(t, want, got, "%s call %d: %s at %s with %+v", name, i, target, at, b)
		}
	}
	// The sequence must exercise both answers to mean anything.
	require.Greater(t, allowed, 50)
	require.Less(t, allowed, 350)
}

func TestMemorySweep(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := newTestClock()
	m := NewMemory(WithClock(clock.Now), WithSweepInterval(time.Minute))
	for i := range 50 {
		key := fmt.Sprint(i)
		_, err := m.Claim(ctx, key, time.Second)
		require.NoError(t, err)
		_, err = m.Lock(ctx, key, "o", time.Second)
		require.NoError(t, err)
		_, err = m.Admit(ctx, key, clock.Now(), Budget{Cooldown: time.Second})
		require.NoError(t, err)
	}
	clock.Add(RunHistory + 2*time.Minute)
	require.NoError(t, m.Ping(ctx))
	m.mu.Lock()
	defer m.mu.Unlock()
	require.Empty(t, m.claims)
	require.Empty(t, m.locks)
	require.Empty(t, m.runs)
}
