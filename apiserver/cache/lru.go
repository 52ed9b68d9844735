package cache

import (
	"container/list"
	"sync"
	"time"
)

// lru is the in-process first level: at most size entries, each valid for
// ttl, least recently used evicted first. Every Delete or Purge advances a
// generation so that a load which started before an invalidation does not
// put the old value back.
type lru struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	now   func() time.Time
	order *list.List
	items map[string]*list.Element
	gen   uint64
}

type lruEntry struct {
	key     string
	value   []byte
	expires time.Time
}

func newLRU(size int, ttl time.Duration, now func() time.Time) *lru {
	return &lru{
		size:  size,
		ttl:   ttl,
		now:   now,
		order: list.New(),
		items: make(map[string]*list.Element, size),
	}
}

// get returns the live value for key.
func (c *lru) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*lruEntry)
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, key)
		return nil, false
	}
	c.order.MoveToFront(el)
	return e.value, true
}

// generation returns the current invalidation generation.
func (c *lru) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// setIfCurrent stores value unless an invalidation happened since gen was
// read; it reports whether it stored.
func (c *lru) setIfCurrent(key string, value []byte, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.size <= 0 {
		return false
	}
	expires := c.now().Add(c.ttl)
	if el, ok := c.items[key]; ok {
		e := el.Value.(*lruEntry)
		e.value, e.expires = value, expires
		c.order.MoveToFront(el)
		return true
	}
	c.items[key] = c.order.PushFront(&lruEntry{key: key, value: value, expires: expires})
	for c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruEntry).key)
	}
	return true
}

// delete drops key and advances the generation.
func (c *lru) delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
	}
}

// purge drops everything and advances the generation.
func (c *lru) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.order.Init()
	clear(c.items)
}

// len returns the number of entries, live or expired.
func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
