package state

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"
)

// Memory is a Store that keeps everything in the process. It forgets all on
// exit and is not shared between replicas, so it serves tests and
// `remediator simulate`. Incidents are kept as JSON, like the other stores
// keep them, so that what comes back is what they would return.
type Memory struct {
	now   func() time.Time
	every time.Duration

	mu        sync.Mutex
	closed    bool
	nextSweep time.Time
	claims    map[string]time.Time
	locks     map[string]memLock
	runs      map[string]runLog
	incidents map[string][]byte
	kv        map[string]map[string][]byte
}

type memLock struct {
	owner   string
	expires time.Time
}

var _ Store = (*Memory)(nil)

// errMemoryClosed is returned by every method of a closed Memory store, so
// that tests can see how callers handle a store that went away.
var errMemoryClosed = fmt.Errorf("memory store is closed: %w", ErrUnavailable)

// NewMemory returns an empty in-memory store. WithClock and
// WithSweepInterval apply to it.
func NewMemory(opts ...Option) *Memory {
	o := buildOptions(opts)
	return &Memory{
		now:       o.clock,
		every:     o.sweepInterval,
		claims:    map[string]time.Time{},
		locks:     map[string]memLock{},
		runs:      map[string]runLog{},
		incidents: map[string][]byte{},
		kv:        map[string]map[string][]byte{},
	}
}

// begin locks the store, sweeps it when a sweep is due, and returns the
// store's time; it fails when the store is closed. The caller unlocks.
func (m *Memory) begin() (time.Time, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return time.Time{}, errMemoryClosed
	}
	now := m.now()
	if m.every > 0 && !now.Before(m.nextSweep) {
		m.sweep(now)
		m.nextSweep = now.Add(m.every)
	}
	return now, nil
}

// sweep drops expired claims, locks and run records. m.mu is held.
func (m *Memory) sweep(now time.Time) {
	maps.DeleteFunc(m.claims, func(_ string, exp time.Time) bool { return !now.Before(exp) })
	maps.DeleteFunc(m.locks, func(_ string, l memLock) bool { return !now.Before(l.expires) })
	at := now.UnixMicro()
	maps.DeleteFunc(m.runs, func(_ string, l runLog) bool { return l.Expires <= at })
}

// Claim implements Store.
func (m *Memory) Claim(_ context.Context, key string, ttl time.Duration) (bool, error) {
	if err := checkTTL("claim", key, ttl); err != nil {
		return false, err
	}
	now, err := m.begin()
	if err != nil {
		return false, fmt.Errorf("claim %s: %w", key, err)
	}
	defer m.mu.Unlock()
	if exp, ok := m.claims[key]; ok && now.Before(exp) {
		return false, nil
	}
	m.claims[key] = now.Add(ttl)
	return true, nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, key string) error {
	if _, err := m.begin(); err != nil {
		return fmt.Errorf("release claim %s: %w", key, err)
	}
	defer m.mu.Unlock()
	delete(m.claims, key)
	return nil
}

// Admit implements Store.
func (m *Memory) Admit(
	_ context.Context,
	target string,
	now time.Time,
	b Budget,
) (Admission, error) {
	if err := checkBudget(target, b); err != nil {
		return Admission{}, err
	}
	storeNow, err := m.begin()
	if err != nil {
		return Admission{}, fmt.Errorf("admit %s: %w", target, err)
	}
	defer m.mu.Unlock()
	adm, log := admit(m.runs[target], now, storeNow, b)
	if len(log.Runs) == 0 {
		delete(m.runs, target)
	} else {
		m.runs[target] = log
	}
	return adm, nil
}

// Lock implements Store. An owner that already holds the lock extends it
// to ttl from now.
func (m *Memory) Lock(_ context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkLock(key, owner, ttl); err != nil {
		return false, err
	}
	now, err := m.begin()
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", key, err)
	}
	defer m.mu.Unlock()
	if l, ok := m.locks[key]; ok && l.owner != owner && now.Before(l.expires) {
		return false, nil
	}
	m.locks[key] = memLock{owner: owner, expires: now.Add(ttl)}
	return true, nil
}

// Unlock implements Store. It does nothing when owner does not hold key.
func (m *Memory) Unlock(_ context.Context, key, owner string) error {
	now, err := m.begin()
	if err != nil {
		return fmt.Errorf("unlock %s: %w", key, err)
	}
	defer m.mu.Unlock()
	if l, ok := m.locks[key]; ok && l.owner == owner && now.Before(l.expires) {
		delete(m.locks, key)
	}
	return nil
}

// SaveIncident implements Store.
func (m *Memory) SaveIncident(_ context.Context, inc Incident) error {
	data, err := encodeIncident(inc)
	if err != nil {
		return err
	}
	if _, err := m.begin(); err != nil {
		return fmt.Errorf("save incident %s: %w", inc.ID, err)
	}
	defer m.mu.Unlock()
	m.incidents[inc.ID] = data
	return nil
}

// Incident implements Store.
func (m *Memory) Incident(_ context.Context, id string) (Incident, bool, error) {
	if _, err := m.begin(); err != nil {
		return Incident{}, false, fmt.Errorf("read incident %s: %w", id, err)
	}
	defer m.mu.Unlock()
	data, ok := m.incidents[id]
	if !ok {
		return Incident{}, false, nil
	}
	var inc Incident
	if err := json.Unmarshal(data, &inc); err != nil {
		return Incident{}, false, fmt.Errorf("decode incident %s: %w", id, err)
	}
	return inc, true, nil
}

// Incidents implements Store.
func (m *Memory) Incidents(_ context.Context, openOnly bool) ([]Incident, error) {
	if _, err := m.begin(); err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	defer m.mu.Unlock()
	out := make([]Incident, 0, len(m.incidents))
	for id, data := range m.incidents {
		var inc Incident
		if err := json.Unmarshal(data, &inc); err != nil {
			return nil, fmt.Errorf("decode incident %s: %w", id, err)
		}
		if !openOnly || inc.Open() {
			out = append(out, inc)
		}
	}
	sortNewestFirst(out)
	return out, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, bucket, key string, value []byte) error {
	if err := checkKV("put", bucket, key); err != nil {
		return err
	}
	if _, err := m.begin(); err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	defer m.mu.Unlock()
	b := m.kv[bucket]
	if b == nil {
		b = map[string][]byte{}
		m.kv[bucket] = b
	}
	b[key] = bytes.Clone(value)
	return nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, bucket, key string) ([]byte, bool, error) {
	if _, err := m.begin(); err != nil {
		return nil, false, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	defer m.mu.Unlock()
	v, ok := m.kv[bucket][key]
	if !ok {
		return nil, false, nil
	}
	return nonNil(bytes.Clone(v)), true, nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, bucket, key string) error {
	if _, err := m.begin(); err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, err)
	}
	defer m.mu.Unlock()
	delete(m.kv[bucket], key)
	if len(m.kv[bucket]) == 0 {
		delete(m.kv, bucket)
	}
	return nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, bucket string) (map[string][]byte, error) {
	if _, err := m.begin(); err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.kv[bucket]))
	for k, v := range m.kv[bucket] {
		out[k] = nonNil(bytes.Clone(v))
	}
	return out, nil
}

// Ping implements Store; it fails once the store is closed.
func (m *Memory) Ping(context.Context) error {
	if _, err := m.begin(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	m.mu.Unlock()
	return nil
}

// Close implements Store. Every later call fails with ErrUnavailable.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// nonNil turns a nil slice into an empty one, so that a stored empty value
// reads back as present and empty.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
