// Package cache is companion-api's two-level read cache: a bounded
// in-process LRU with a time-to-live (L1) in front of Redis (L2). Writes
// invalidate a key in L2 and, through Redis pub/sub, in the L1 of every
// replica; concurrent misses for one key share a single load.
package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Config configures a Cache.
type Config struct {
	// L1Size bounds the in-process level in entries; zero turns L1 off.
	L1Size int
	// L1TTL is how long an L1 entry is served before it is loaded again.
	L1TTL time.Duration
	// L2TTL is how long a value lives in Redis; it bounds how long a value
	// can stay stale if a delete in Redis fails.
	L2TTL time.Duration
	// LoadTimeout bounds one shared load, which outlives the request that
	// started it so that the requests waiting on it are not cut short.
	LoadTimeout time.Duration
	// Redis is the second level; nil runs with L1 only.
	Redis *redis.Client
	// KeyPrefix prefixes every Redis key.
	KeyPrefix string
	// Channel is the Redis pub/sub channel that carries invalidations.
	Channel string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Level names the cache level in metric labels.
const (
	LevelL1 = "l1"
	LevelL2 = "l2"
)

// Loader loads a value that no cache level holds. Errors are returned to
// every caller waiting on the load and are never cached.
type Loader func(ctx context.Context) ([]byte, error)

// Cache is the two-level cache. Its methods are safe for concurrent use.
type Cache struct {
	cfg     Config
	log     *slog.Logger
	l1      *lru
	rdb     *redis.Client
	group   singleflight.Group
	metrics *metrics
	origin  string
	bypass  atomic.Bool

	subscribed     chan struct{}
	subscribedOnce sync.Once
	pubsubUp       atomic.Bool
}

// New builds a Cache and registers its metrics on reg. It does not contact
// Redis; Run subscribes to invalidations.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Cache, error) {
	if cfg.L1Size < 0 {
		return nil, fmt.Errorf("cache l1 size %d: must not be negative", cfg.L1Size)
	}
	if cfg.L1TTL <= 0 {
		return nil, fmt.Errorf("cache l1 ttl %s: must be positive", cfg.L1TTL)
	}
	if cfg.L2TTL <= 0 {
		cfg.L2TTL = 5 * time.Minute
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 5 * time.Second
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "companion-api:doc:"
	}
	if cfg.Channel == "" {
		cfg.Channel = "companion-api:invalidate"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("make cache origin id: %w", err)
	}
	m, err := newMetrics(reg, cfg.Now)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		cfg:        cfg,
		log:        logger,
		l1:         newLRU(cfg.L1Size, cfg.L1TTL, cfg.Now),
		rdb:        cfg.Redis,
		metrics:    m,
		origin:     hex.EncodeToString(id[:]),
		subscribed: make(chan struct{}),
	}
	if c.rdb == nil {
		c.subscribedOnce.Do(func() { close(c.subscribed) })
	}
	return c, nil
}

// finalLevel is where a miss is counted: the last level asked. Counting a
// miss once keeps hits/(hits+misses) equal to the share of lookups served
// from any cache level.
func (c *Cache) finalLevel() string {
	if c.rdb != nil {
		return LevelL2
	}
	return LevelL1
}

// SetBypass makes every Get skip both levels and load (fault injection for
// a low hit rate). Bypassed lookups count as misses.
func (c *Cache) SetBypass(on bool) { c.bypass.Store(on) }

// HasL2 reports whether Redis is configured.
func (c *Cache) HasL2() bool { return c.rdb != nil }

// Subscribed is closed once invalidations from other replicas are being
// received (at once when there is no Redis).
func (c *Cache) Subscribed() <-chan struct{} { return c.subscribed }

type loadResult struct {
	value []byte
	level string // LevelL2, or "" when the value came from the loader
}

// Get returns the value for key from L1, then L2, then load. Concurrent
// callers that miss on the same key wait for one load.
func (c *Cache) Get(ctx context.Context, key string, load Loader) ([]byte, error) {
	if c.bypass.Load() {
		c.metrics.miss(c.finalLevel())
		return load(ctx)
	}
	if v, ok := c.l1.get(key); ok {
		c.metrics.hit(LevelL1)
		return v, nil
	}
	ch := c.group.DoChan(key, func() (any, error) {
		return c.fill(ctx, key, load)
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for cache load of %s: %w", key, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			c.metrics.miss(c.finalLevel())
			return nil, r.Err
		}
		res := r.Val.(loadResult)
		if res.level == LevelL2 {
			c.metrics.hit(LevelL2)
		} else {
			c.metrics.miss(c.finalLevel())
		}
		return res.value, nil
	}
}

// fill runs once per key for all waiting callers. It is detached from the
// first caller's cancellation but bounded by LoadTimeout.
func (c *Cache) fill(reqCtx context.Context, key string, load Loader) (loadResult, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), c.cfg.LoadTimeout)
	defer cancel()
	gen := c.l1.generation()

	if c.rdb != nil {
		v, err := c.rdb.Get(ctx, c.cfg.KeyPrefix+key).Bytes()
		switch {
		case err == nil:
			c.l1.setIfCurrent(key, v, gen)
			return loadResult{value: v, level: LevelL2}, nil
		case !errors.Is(err, redis.Nil):
			c.log.Debug("cache_l2_get_failed", "key", key, "err", err)
		}
	}

	v, err := load(ctx)
	if err != nil {
		return loadResult{}, err
	}
	// A write that invalidated this key while the load ran may have made
	// v stale: serve it to the callers that asked before the write, but
	// keep it out of both levels.
	if c.l1.setIfCurrent(key, v, gen) || c.cfg.L1Size == 0 {
		c.setL2(ctx, key, v, gen)
	}
	return loadResult{value: v}, nil
}

func (c *Cache) setL2(ctx context.Context, key string, v []byte, gen uint64) {
	if c.rdb == nil || c.l1.generation() != gen {
		return
	}
	if err := c.rdb.Set(ctx, c.cfg.KeyPrefix+key, v, c.cfg.L2TTL).Err(); err != nil {
		c.log.Debug("cache_l2_set_failed", "key", key, "err", err)
	}
}

// Invalidate drops key from this replica's L1 and from L2, and tells every
// other replica to drop it from its L1. The local L1 is always cleared; an
// error means Redis could not be told, and other replicas may serve the old
// value until their L1 TTL passes.
func (c *Cache) Invalidate(ctx context.Context, key string) error {
	c.l1.delete(key)
	if c.rdb == nil {
		return nil
	}
	if err := c.rdb.Del(ctx, c.cfg.KeyPrefix+key).Err(); err != nil {
		return fmt.Errorf("delete cache key %s from redis: %w", key, err)
	}
	if err := c.rdb.Publish(ctx, c.cfg.Channel, c.origin+" "+key).Err(); err != nil {
		return fmt.Errorf("publish invalidation of %s: %w", key, err)
	}
	return nil
}

// Run receives invalidations from other replicas until ctx ends. After a
// lost connection it empties L1, since invalidations may have been missed
// while it was down. Without Redis it only waits for ctx.
func (c *Cache) Run(ctx context.Context) error {
	if c.rdb == nil {
		<-ctx.Done()
		return nil
	}
	ps := c.rdb.Subscribe(ctx, c.cfg.Channel)
	// Receive blocks in a socket read that ignores ctx; closing the
	// subscription is what ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		if stop() {
			_ = ps.Close()
		}
	}()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if c.pubsubUp.Swap(false) {
				c.log.Warn("cache_invalidation_lost", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		c.handle(msg)
	}
}

func (c *Cache) handle(msg any) {
	switch m := msg.(type) {
	case *redis.Subscription:
		if m.Kind != "subscribe" {
			return
		}
		c.l1.purge()
		c.pubsubUp.Store(true)
		c.subscribedOnce.Do(func() { close(c.subscribed) })
		c.log.Info("cache_invalidation_subscribed", "channel", m.Channel)
	case *redis.Message:
		origin, key, ok := strings.Cut(m.Payload, " ")
		if !ok || origin == c.origin {
			return
		}
		c.l1.delete(key)
	}
}

// Check reports whether the cache can do its whole job: nil without Redis,
// otherwise Redis must answer a ping and the invalidation subscription
// must be up.
func (c *Cache) Check(ctx context.Context) error {
	if c.rdb == nil {
		return nil
	}
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	if !c.pubsubUp.Load() {
		return errors.New("redis invalidation subscription is not up")
	}
	return nil
}

// L1Len returns how many entries L1 holds.
func (c *Cache) L1Len() int { return c.l1.len() }
