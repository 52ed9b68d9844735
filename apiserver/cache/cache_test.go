package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/remediator/testenv"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newCache builds a cache with its own registry; rdb may be nil.
func newCache(t *testing.T, rdb *redis.Client, size int) (*Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Config{L1Size: size, L1TTL: time.Minute, Redis: rdb}, quietLogger(), reg)
	require.NoError(t, err)
	return c, reg
}

// runCache runs c's invalidation loop until the test ends and waits for
// its subscription.
func runCache(t *testing.T, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.Subscribed():
	case <-time.After(10 * time.Second):
		t.Fatal("cache did not subscribe to invalidations")
	}
}

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// source is a loader over a mutable value that counts its loads.
type source struct {
	mu    sync.Mutex
	value string
	loads atomic.Int32
	delay time.Duration
}

func (s *source) set(v string) { s.mu.Lock(); s.value = v; s.mu.Unlock() }

func (s *source) load(ctx context.Context) ([]byte, error) {
	s.loads.Add(1)
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return []byte(s.value), nil
}

func TestLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name    string
		run     func(c *lru)
		present []string
		absent  []string
	}{
		{
			name: "evicts least recently used beyond size",
			run: func(c *lru) {
				for _, k := range []string{"a", "b", "c"} {
					c.setIfCurrent(k, []byte(k), c.generation())
				}
				c.get("a")
				c.setIfCurrent("d", []byte("d"), c.generation())
			},
			present: []string{"a", "c", "d"},
			absent:  []string{"b"},
		},
		{
			name: "expires after ttl",
			run: func(c *lru) {
				c.setIfCurrent("a", []byte("a"), c.generation())
				now = now.Add(time.Minute)
			},
			absent: []string{"a"},
		},
		{
			name: "a load older than an invalidation is not stored",
			run: func(c *lru) {
				gen := c.generation()
				c.delete("other")
				c.setIfCurrent("a", []byte("a"), gen)
			},
			absent: []string{"a"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newLRU(3, time.Minute, clock)
			tc.run(c)
			for _, k := range tc.present {
				_, ok := c.get(k)
				require.True(t, ok, "key %s should be cached", k)
			}
			for _, k := range tc.absent {
				_, ok := c.get(k)
				require.False(t, ok, "key %s should not be cached", k)
			}
		})
	}
}

func TestStampedeLoadsOnce(t *testing.T) {
	tests := []struct {
		name  string
		redis bool
	}{
		{name: "l1 only"},
		{name: "l1 and redis", redis: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rdb *redis.Client
			if tc.redis {
				rdb = newRedis(t)
			}
			c, reg := newCache(t, rdb, 100)
			src := &source{value: "v1", delay: 100 * time.Millisecond}

			const callers = 200
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := c.Get(context.Background(), "doc/1", src.load)
					if err == nil && string(v) != "v1" {
						err = fmt.Errorf("got %q", v)
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.EqualValues(t, 1, src.loads.Load(), "concurrent misses must share one load")

			_, err := c.Get(context.Background(), "doc/1", src.load)
			require.NoError(t, err)
			require.EqualValues(t, 1, src.loads.Load(), "a later read is served from L1")
			require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.hitsL1))
			require.NotZero(t, testutil.CollectAndCount(reg, "cache_misses_total"))
		})
	}
}

func TestInvalidationReachesOtherReplica(t *testing.T) {
	rdb := newRedis(t)
	a, _ := newCache(t, rdb, 100)
	b, _ := newCache(t, redis.NewClient(&redis.Options{Addr: rdb.Options().Addr}), 100)
	runCache(t, a)
	runCache(t, b)
	src := &source{value: "v1"}
	ctx := context.Background()

	got, err := a.Get(ctx, "doc/1", src.load)
	require.NoError(t, err)
	require.Equal(t, "v1", string(got))
	got, err = b.Get(ctx, "doc/1", src.load)
	require.NoError(t, err)
	require.Equal(t, "v1", string(got))
	require.EqualValues(t, 1, src.loads.Load(), "replica b is filled from redis, not the source")
	require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.hitsL2))

	src.set("v2")
	require.NoError(t, a.Invalidate(ctx, "doc/1"))
	testenv.Eventually(t, 5*time.Second, func() bool {
		v, err := b.Get(ctx, "doc/1", src.load)
		return err == nil && string(v) == "v2"
	}, "replica b still serves the old value from its L1")
}

func TestWithoutInvalidationL1ServesOldValue(t *testing.T) {
	// The control for the test above: with no message from a, b keeps its
	// L1 copy until the TTL passes.
	rdb := newRedis(t)
	b, _ := newCache(t, rdb, 100)
	src := &source{value: "v1"}
	ctx := context.Background()
	_, err := b.Get(ctx, "doc/1", src.load)
	require.NoError(t, err)
	src.set("v2")
	require.NoError(t, rdb.Del(ctx, "companion-api:doc:doc/1").Err())
	got, err := b.Get(ctx, "doc/1", src.load)
	require.NoError(t, err)
	require.Equal(t, "v1", string(got))
}

func TestLoadDuringInvalidationIsNotCached(t *testing.T) {
	c, _ := newCache(t, newRedis(t), 100)
	ctx := context.Background()
	started := make(chan struct{})
	release := make(chan struct{})
	slow := func(context.Context) ([]byte, error) {
		close(started)
		<-release
		return []byte("old"), nil
	}
	done := make(chan []byte)
	go func() {
		v, _ := c.Get(ctx, "doc/1", slow)
		done <- v
	}()
	<-started
	require.NoError(t, c.Invalidate(ctx, "doc/1"))
	close(release)
	require.Equal(t, "old", string(<-done))

	fresh := &source{value: "new"}
	got, err := c.Get(ctx, "doc/1", fresh.load)
	require.NoError(t, err)
	require.Equal(t, "new", string(got), "a load that raced a write must not be cached")
}

func TestLoaderErrorsAreNotCached(t *testing.T) {
	c, _ := newCache(t, nil, 100)
	boom := errors.New("boom")
	calls := 0
	load := func(context.Context) ([]byte, error) { calls++; return nil, boom }
	for range 2 {
		_, err := c.Get(context.Background(), "k", load)
		require.ErrorIs(t, err, boom)
	}
	require.Equal(t, 2, calls)
}

func TestRedisDownFallsBackToLoader(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{
		Addr: srv.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	c, _ := newCache(t, rdb, 0)
	runCache(t, c)
	ctx := context.Background()
	require.NoError(t, c.Check(ctx))

	srv.Stop()
	src := &source{value: "v1"}
	got, err := c.Get(ctx, "doc/1", src.load)
	require.NoError(t, err)
	require.Equal(t, "v1", string(got))
	require.Error(t, c.Check(ctx))
	require.Error(t, c.Invalidate(ctx, "doc/1"))
}

func TestHitRateWindow(t *testing.T) {
	now := time.Unix(5000, 0)
	w := &window{now: func() time.Time { return now }}
	require.Equal(t, 1.0, w.rate(), "idle is not a low hit rate")
	for range 3 {
		w.add(true)
	}
	w.add(false)
	require.Equal(t, 0.75, w.rate())
	now = now.Add(2 * windowSeconds * time.Second)
	w.add(false)
	require.Equal(t, 0.0, w.rate(), "old buckets leave the window")
}

func TestBypassCountsMisses(t *testing.T) {
	c, _ := newCache(t, nil, 100)
	src := &source{value: "v"}
	ctx := context.Background()
	_, err := c.Get(ctx, "k", src.load)
	require.NoError(t, err)
	c.SetBypass(true)
	for range 3 {
		_, err := c.Get(ctx, "k", src.load)
		require.NoError(t, err)
	}
	require.EqualValues(t, 4, src.loads.Load())
	require.Equal(t, 4.0, testutil.ToFloat64(c.metrics.missL1))
	require.Equal(t, 0.0, testutil.ToFloat64(c.metrics.hitsL1))
}
