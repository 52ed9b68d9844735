package state

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

func openBoltHarness(t *testing.T) *harness {
	clock := newTestClock()
	path := filepath.Join(t.TempDir(), "data", "state.db")
	open := func() Store {
		s, err := OpenBolt(path, WithClock(clock.Now), WithOpenTimeout(time.Second))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return reopenable(t, open, clock.Add, nil)
}

// countKeys returns how many entries each top-level bucket holds.
func countKeys(t *testing.T, s *Bolt) map[string]int {
	t.Helper()
	counts := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func([]byte, []byte) error {
				counts[string(name)]++
				return nil
			})
		})
	})
	require.NoError(t, err)
	return counts
}

func TestBoltSweep(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := newTestClock()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"),
		WithClock(clock.Now), WithSweepInterval(0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	for i := range 100 {
		key := string(rune('a'+i%26)) + time.Duration(i).String()
		_, err := s.Claim(ctx, "claim/"+key, time.Minute)
		require.NoError(t, err)
		_, err = s.Lock(ctx, "lock/"+key, "owner", time.Minute)
		require.NoError(t, err)
		_, err = s.Admit(ctx, "target/"+key, clock.Now(), Budget{Cooldown: time.Minute})
		require.NoError(t, err)
	}
	_, err = s.Claim(ctx, "claim/long", time.Hour)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"claims": 101, "locks": 100, "runs": 100}, countKeys(t, s))

	n, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing has expired yet")

	clock.Add(2 * time.Minute)
	n, err = s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, n, "expired claims and locks")
	require.Equal(t, map[string]int{"claims": 1, "runs": 100}, countKeys(t, s),
		"the long claim and the run history are left")

	clock.Add(RunHistory)
	n, err = s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 101, n)
	require.Empty(t, countKeys(t, s))
}

func TestBoltBackgroundSweep(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"),
		WithClock(clock.Now), WithSweepInterval(10*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	_, err = s.Claim(t.Context(), "fp/sweep", time.Second)
	require.NoError(t, err)
	clock.Add(2 * time.Second)
	require.Eventually(t, func() bool { return countKeys(t, s)["claims"] == 0 },
		5*time.Second, 10*time.Millisecond, "the background sweep removes the claim")
}

func TestBoltSecondOpenTimesOut(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	first, err := OpenBolt(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = first.Close() })

	start := time.Now()
	_, err = OpenBolt(path, WithOpenTimeout(200*time.Millisecond))
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorIs(t, err, berrors.ErrTimeout)
	require.ErrorContains(t, err, "another process holds it")
	require.Less(t, time.Since(start), 5*time.Second, "the open gave up instead of hanging")

	require.NoError(t, first.Close())
	second, err := OpenBolt(path, WithOpenTimeout(time.Second))
	require.NoError(t, err, "the file opens once the first holder closed it")
	require.NoError(t, second.Close())
}

func TestBoltOpenFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notADir := filepath.Join(dir, "file")
	require.NoError(t, writeFile(notADir, "x"))
	garbage := filepath.Join(dir, "garbage.db")
	require.NoError(t, writeFile(garbage, string(make([]byte, 8192))))

	cases := []struct {
		name string
		path string
	}{
		{name: "directory is a file", path: filepath.Join(notADir, "state.db")},
		{name: "file is not a bolt file", path: garbage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenBolt(c.path, WithOpenTimeout(200*time.Millisecond))
			require.ErrorIs(t, err, ErrUnavailable)
			require.ErrorContains(t, err, "open state file "+c.path)
		})
	}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}
