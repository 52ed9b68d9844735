package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Top-level buckets of the bolt file.
var (
	bucketClaims    = []byte("claims")
	bucketLocks     = []byte("locks")
	bucketRuns      = []byte("runs")
	bucketIncidents = []byte("incidents")
	bucketKV        = []byte("kv")
)

// Bolt is a Store in one bbolt file in the data directory. It survives a
// restart of the process but serves one process only: a second process that
// opens the same file waits for the open timeout and fails. Claim, Admit and
// Lock each read and write in one transaction, so they are atomic.
//
// Expired claims, locks and run records are dropped by a background sweep
// (see WithSweepInterval) and overwritten when met on access, so the file
// stops growing once its working set is stable. Incidents are kept until
// they are replaced; the store does not age them out.
type Bolt struct {
	db     *bolt.DB
	path   string
	now    func() time.Time
	logger *slog.Logger

	closeOnce sync.Once
	stop      chan struct{}
	sweeper   sync.WaitGroup
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens or creates the bolt store at path, making its directory if
// needed. WithClock, WithSweepInterval, WithOpenTimeout and WithLogger apply.
// When another process holds the file, OpenBolt fails after the open timeout
// with an error that wraps ErrUnavailable and bbolt's ErrTimeout.
func OpenBolt(path string, opts ...Option) (*Bolt, error) {
	o := buildOptions(opts)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open state file %s: %w: %w", path, ErrUnavailable, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.openTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf(
			"open state file %s: another process holds it (gave up after %s): %w: %w",
			path, o.openTimeout, ErrUnavailable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w: %w", path, ErrUnavailable, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{
			bucketClaims, bucketLocks, bucketRuns, bucketIncidents, bucketKV,
		} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open state file %s: %w: %w", path, ErrUnavailable, err)
	}

	s := &Bolt{db: db, path: path, now: o.clock, logger: o.logger, stop: make(chan struct{})}
	if o.sweepInterval > 0 {
		s.sweeper.Go(func() { s.sweepEvery(o.sweepInterval) })
	}
	return s, nil
}

// Path returns the file the store lives in.
func (s *Bolt) Path() string { return s.path }

// update runs fn in a write transaction and wraps any failure in
// ErrUnavailable, naming op.
func (s *Bolt) update(op string, fn func(tx *bolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return nil
}

// view runs fn in a read transaction and wraps any failure in
// ErrUnavailable, naming op.
func (s *Bolt) view(op string, fn func(tx *bolt.Tx) error) error {
	if err := s.db.View(fn); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return nil
}

// Expiry times are kept as 8 big-endian bytes of Unix nanoseconds; a lock
// follows them with its owner.

func putExpiry(t time.Time, rest string) []byte {
	b := make([]byte, 8, 8+len(rest))
	binary.BigEndian.PutUint64(b, uint64(t.UnixNano()))
	return append(b, rest...)
}

// readExpiry splits a stored value into its expiry and the bytes after it.
// A value too short to hold one reads as already expired.
func readExpiry(v []byte) (time.Time, []byte) {
	if len(v) < 8 {
		return time.Time{}, nil
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), v[8:]
}

// Claim implements Store.
func (s *Bolt) Claim(_ context.Context, key string, ttl time.Duration) (bool, error) {
	if err := checkTTL("claim", key, ttl); err != nil {
		return false, err
	}
	var won bool
	err := s.update("claim "+key, func(tx *bolt.Tx) error {
		won = false
		b := tx.Bucket(bucketClaims)
		now := s.now()
		if exp, _ := readExpiry(b.Get([]byte(key))); now.Before(exp) {
			return nil
		}
		won = true
		return b.Put([]byte(key), putExpiry(now.Add(ttl), ""))
	})
	return won, err
}

// Release implements Store.
func (s *Bolt) Release(_ context.Context, key string) error {
	return s.update("release claim "+key, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClaims).Delete([]byte(key))
	})
}

// Admit implements Store.
func (s *Bolt) Admit(
	_ context.Context,
	target string,
	now time.Time,
	b Budget,
) (Admission, error) {
	if err := checkBudget(target, b); err != nil {
		return Admission{}, err
	}
	var adm Admission
	err := s.update("admit "+target, func(tx *bolt.Tx) error {
		bucket := tx.Bucket(bucketRuns)
		var log runLog
		if v := bucket.Get([]byte(target)); v != nil {
			if err := json.Unmarshal(v, &log); err != nil {
				return fmt.Errorf("decode run record: %w", err)
			}
		}
		// The pruned history is written back even when the run is refused,
		// as the Redis store does, so that every store keeps the same runs.
		var next runLog
		adm, next = admit(log, now, s.now(), b)
		if len(next.Runs) == 0 {
			return bucket.Delete([]byte(target))
		}
		data, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode run record: %w", err)
		}
		return bucket.Put([]byte(target), data)
	})
	if err != nil {
		return Admission{}, err
	}
	return adm, nil
}

// Lock implements Store. An owner that already holds the lock extends it
// to ttl from now.
func (s *Bolt) Lock(_ context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkLock(key, owner, ttl); err != nil {
		return false, err
	}
	var held bool
	err := s.update("lock "+key, func(tx *bolt.Tx) error {
		held = false
		b := tx.Bucket(bucketLocks)
		now := s.now()
		exp, holder := readExpiry(b.Get([]byte(key)))
		if now.Before(exp) && string(holder) != owner {
			return nil
		}
		held = true
		return b.Put([]byte(key), putExpiry(now.Add(ttl), owner))
	})
	return held, err
}

// Unlock implements Store. It does nothing when owner does not hold key.
func (s *Bolt) Unlock(_ context.Context, key, owner string) error {
	return s.update("unlock "+key, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLocks)
		exp, holder := readExpiry(b.Get([]byte(key)))
		if string(holder) != owner || !s.now().Before(exp) {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

// SaveIncident implements Store.
func (s *Bolt) SaveIncident(_ context.Context, inc Incident) error {
	data, err := encodeIncident(inc)
	if err != nil {
		return err
	}
	return s.update("save incident "+inc.ID, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIncidents).Put([]byte(inc.ID), data)
	})
}

// Incident implements Store.
func (s *Bolt) Incident(_ context.Context, id string) (Incident, bool, error) {
	var (
		inc   Incident
		found bool
	)
	err := s.view("read incident "+id, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIncidents).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &inc)
	})
	if err != nil {
		return Incident{}, false, err
	}
	return inc, found, nil
}

// Incidents implements Store. It reads every stored incident, which suits
// the few thousand that one machine collects.
func (s *Bolt) Incidents(_ context.Context, openOnly bool) ([]Incident, error) {
	var out []Incident
	err := s.view("list incidents", func(tx *bolt.Tx) error {
		out = []Incident{}
		return tx.Bucket(bucketIncidents).ForEach(func(k, v []byte) error {
			var inc Incident
			if err := json.Unmarshal(v, &inc); err != nil {
				return fmt.Errorf("decode incident %s: %w", k, err)
			}
			if !openOnly || inc.Open() {
				out = append(out, inc)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortNewestFirst(out)
	return out, nil
}

// Put implements Store.
func (s *Bolt) Put(_ context.Context, bucket, key string, value []byte) error {
	if err := checkKV("put", bucket, key); err != nil {
		return err
	}
	return s.update("put "+bucket+"/"+key, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketKV).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), nonNil(value))
	})
}

// Get implements Store.
func (s *Bolt) Get(_ context.Context, bucket, key string) ([]byte, bool, error) {
	var (
		value []byte
		found bool
	)
	err := s.view("get "+bucket+"/"+key, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		// A cursor tells an empty value from a missing key.
		k, v := b.Cursor().Seek([]byte(key))
		if found = k != nil && bytes.Equal(k, []byte(key)); found {
			value = nonNil(bytes.Clone(v))
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return value, found, nil
}

// Delete implements Store.
func (s *Bolt) Delete(_ context.Context, bucket, key string) error {
	return s.update("delete "+bucket+"/"+key, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

// List implements Store.
func (s *Bolt) List(_ context.Context, bucket string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.view("list "+bucket, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = nonNil(bytes.Clone(v))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Ping implements Store; it fails once the store is closed.
func (s *Bolt) Ping(context.Context) error {
	return s.view("ping", func(*bolt.Tx) error { return nil })
}

// Close stops the sweep and closes the file. Every later call fails with
// ErrUnavailable. It is safe to call more than once.
func (s *Bolt) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.sweeper.Wait()
		if err = s.db.Close(); err != nil {
			err = fmt.Errorf("close state file %s: %w", s.path, err)
		}
	})
	return err
}

// Sweep removes the claims, locks and run records that have expired, and
// reports how many it removed. The background sweep calls it; tests and
// maintenance commands may too.
func (s *Bolt) Sweep(context.Context) (int, error) {
	removed := 0
	err := s.update("sweep state file", func(tx *bolt.Tx) error {
		removed = 0
		now := s.now()
		expired := func(v []byte) bool {
			exp, _ := readExpiry(v)
			return !now.Before(exp)
		}
		at := now.UnixMicro()
		stale := func(v []byte) bool {
			var log runLog
			return json.Unmarshal(v, &log) != nil || log.Expires <= at
		}
		for _, pass := range []struct {
			bucket []byte
			drop   func([]byte) bool
		}{
			{bucketClaims, expired},
			{bucketLocks, expired},
			{bucketRuns, stale},
		} {
			n, err := deleteWhere(tx.Bucket(pass.bucket), pass.drop)
			removed += n
			if err != nil {
				return fmt.Errorf("sweep bucket %s: %w", pass.bucket, err)
			}
		}
		return nil
	})
	return removed, err
}

// deleteWhere deletes every entry of b whose value drop selects. The keys
// are gathered first, since deleting under a moving cursor may skip some.
func deleteWhere(b *bolt.Bucket, drop func([]byte) bool) (int, error) {
	var keys [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if drop(v) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

func (s *Bolt) sweepEvery(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			n, err := s.Sweep(context.Background())
			if err != nil {
				s.logger.Warn("state sweep failed", "path", s.path, "err", err)
				continue
			}
			if n > 0 {
				s.logger.Debug("state sweep removed expired entries", "path", s.path, "removed", n)
			}
		}
	}
}
