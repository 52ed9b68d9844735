package state

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// IncidentUpdater is implemented by stores that can read, change and write
// one incident atomically on their own: the embedded stores, which serve
// one process. Callers fall back to Lock, Incident, SaveIncident and Unlock
// for stores without it, such as Redis.
type IncidentUpdater interface {
	// UpdateIncident calls change with the incident (found false and a zero
	// Incident when there is none) and saves what change leaves when it
	// returns true, all in one step.
	UpdateIncident(ctx context.Context, id string, change func(inc *Incident, found bool) bool) error
}

var (
	_ IncidentUpdater = (*Memory)(nil)
	_ IncidentUpdater = (*Bolt)(nil)
)

// UpdateIncident implements IncidentUpdater.
func (m *Memory) UpdateIncident(_ context.Context, id string,
	change func(inc *Incident, found bool) bool,
) error {
	if _, err := m.begin(); err != nil {
		return fmt.Errorf("update incident %s: %w", id, err)
	}
	defer m.mu.Unlock()
	inc, found, err := decodeStored(id, m.incidents[id])
	if err != nil {
		return err
	}
	if !change(&inc, found) {
		return nil
	}
	data, err := encodeIncident(inc)
	if err != nil {
		return err
	}
	m.incidents[inc.ID] = data
	return nil
}

// UpdateIncident implements IncidentUpdater in one bbolt transaction.
func (s *Bolt) UpdateIncident(_ context.Context, id string,
	change func(inc *Incident, found bool) bool,
) error {
	return s.update("update incident "+id, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIncidents)
		inc, found, err := decodeStored(id, b.Get([]byte(id)))
		if err != nil {
			return err
		}
		if !change(&inc, found) {
			return nil
		}
		data, err := encodeIncident(inc)
		if err != nil {
			return err
		}
		return b.Put([]byte(inc.ID), data)
	})
}

func decodeStored(id string, data []byte) (Incident, bool, error) {
	var inc Incident
	if data == nil {
		return inc, false, nil
	}
	if err := json.Unmarshal(data, &inc); err != nil {
		return inc, false, fmt.Errorf("decode incident %s: %w", id, err)
	}
	return inc, true, nil
}
