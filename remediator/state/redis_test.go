package state

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/remediator/testenv"
)

// openRedisHarness starts a redis-server of its own, so that stopping it
// for the down behaviour touches no other test.
func openRedisHarness(t *testing.T) *harness {
	srv := testenv.StartRedis(t)
	open := func() Store {
		s, err := NewRedis(RedisConfig{Addr: srv.Addr, Prefix: "test:"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return reopenable(t, open, time.Sleep, func(*testing.T) { srv.Stop() })
}

func rawClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisKeysCarryPrefixAndExpiry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := testenv.StartRedis(t)
	s, err := NewRedis(RedisConfig{Addr: srv.Addr, Prefix: "shop-a:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	other, err := NewRedis(RedisConfig{Addr: srv.Addr, Prefix: "shop-b:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })

	won, err := s.Claim(ctx, "fp", time.Hour)
	require.NoError(t, err)
	require.True(t, won)
	won, err = other.Claim(ctx, "fp", time.Hour)
	require.NoError(t, err)
	require.True(t, won, "another prefix is another namespace")

	_, err = s.Lock(ctx, "deploy/x", "a", time.Hour)
	require.NoError(t, err)
	_, err = s.Admit(ctx, "shop/x", time.Now(), Budget{Cooldown: time.Minute})
	require.NoError(t, err)
	require.NoError(t, s.SaveIncident(ctx, sampleIncident("i1", t0, StatusOpen)))
	require.NoError(t, s.Put(ctx, "revisions", "x", []byte("1")))

	raw := rawClient(t, srv.Addr)
	keys, err := raw.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		require.True(t, strings.HasPrefix(k, "shop-a:") || strings.HasPrefix(k, "shop-b:"), k)
	}
	for _, k := range []string{"shop-a:claim:fp", "shop-a:lock:deploy/x", "shop-a:runs:shop/x"} {
		ttl, err := raw.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.Positive(t, ttl, "%s expires", k)
	}
}

func TestRedisPassword(t *testing.T) {
	srv := testenv.StartRedis(t, "--requirepass", "s3cret")
	file := filepath.Join(t.TempDir(), "password")
	require.NoError(t, writeFile(file, "s3cret\n"))
	t.Setenv("TEST_REDIS_PASSWORD", "s3cret")

	cases := []struct {
		name   string
		cfg    RedisConfig
		wantOK bool
	}{
		{name: "password", cfg: RedisConfig{Password: "s3cret"}, wantOK: true},
		{name: "password file", cfg: RedisConfig{PasswordFile: file}, wantOK: true},
		{name: "password env", cfg: RedisConfig{PasswordEnv: "TEST_REDIS_PASSWORD"}, wantOK: true},
		{name: "wrong password", cfg: RedisConfig{Password: "nope"}},
		{name: "no password", cfg: RedisConfig{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Addr = srv.Addr
			s, err := NewRedis(c.cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			err = s.Ping(t.Context())
			if c.wantOK {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrUnavailable)
		})
	}
}

func TestRedisConfigErrors(t *testing.T) {
	t.Setenv("TEST_REDIS_EMPTY", "")
	cases := []struct {
		name string
		cfg  RedisConfig
		want []string
	}{
		{name: "no addr", cfg: RedisConfig{}, want: []string{"addr is empty"}},
		{
			name: "every problem at once",
			cfg: RedisConfig{
				Addr: "127.0.0.1:1", DB: -1, ReadTimeout: -time.Second,
				Password: "a", PasswordEnv: "B", MaxRetries: -2,
			},
			want: []string{"db -1", "timeouts", "set at most one", "max_retries"},
		},
		{
			name: "missing password file",
			cfg:  RedisConfig{Addr: "127.0.0.1:1", PasswordFile: "/nonexistent/password"},
			want: []string{"read redis password file"},
		},
		{
			name: "empty password env",
			cfg:  RedisConfig{Addr: "127.0.0.1:1", PasswordEnv: "TEST_REDIS_EMPTY"},
			want: []string{"$TEST_REDIS_EMPTY is empty or unset"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewRedis(c.cfg)
			require.Error(t, err)
			require.NotErrorIs(t, err, ErrUnavailable, "a bad config is not an outage")
			for _, w := range c.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestRedisClosedClient(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	s, err := NewRedis(RedisConfig{Addr: srv.Addr})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = s.Claim(ctx, "fp", time.Hour)
	require.ErrorIs(t, err, ErrUnavailable)
}
