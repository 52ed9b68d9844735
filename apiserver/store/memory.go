package store

import (
	"context"
	"slices"
	"sync"
)

// Memory is the embedded store: documents in process memory, so that
// companion-api runs with nothing else installed. It is lost on restart and
// shared by no other replica; production uses Elastic.
type Memory struct {
	mu   sync.RWMutex
	cols map[string]map[string]memDoc
}

type memDoc struct {
	doc   Document
	words []string
}

// NewMemory returns an empty embedded store.
func NewMemory() *Memory {
	return &Memory{cols: make(map[string]map[string]memDoc)}
}

// Kind returns "embedded".
func (m *Memory) Kind() string { return "embedded" }

// Check always succeeds: memory is always there.
func (m *Memory) Check(context.Context) error { return nil }

// Get returns the document or ErrNotFound.
func (m *Memory) Get(_ context.Context, collection, id string) (Document, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.cols[collection][id]
	if !ok {
		return Document{}, ErrNotFound
	}
	return d.doc, nil
}

// Put creates or replaces the document.
func (m *Memory) Put(ctx context.Context, collection string, doc Document) error {
	return m.PutMany(ctx, collection, []Document{doc})
}

// PutMany creates or replaces the documents.
func (m *Memory) PutMany(_ context.Context, collection string, docs []Document) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	col := m.cols[collection]
	if col == nil {
		col = make(map[string]memDoc)
		m.cols[collection] = col
	}
	for _, d := range docs {
		col[d.ID] = memDoc{doc: d, words: Words(Text(d.Data))}
	}
	return nil
}

// Delete removes the document or returns ErrNotFound.
func (m *Memory) Delete(_ context.Context, collection, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cols[collection][id]; !ok {
		return ErrNotFound
	}
	delete(m.cols[collection], id)
	return nil
}

// List returns documents ordered by id.
func (m *Memory) List(_ context.Context, collection string, offset, limit int) (Page, error) {
	return m.page(collection, nil, offset, limit), nil
}

// Search returns documents containing every word of query, ordered by id.
func (m *Memory) Search(
	_ context.Context,
	collection, query string,
	offset, limit int,
) (Page, error) {
	return m.page(collection, Words(query), offset, limit), nil
}

func (m *Memory) page(collection string, words []string, offset, limit int) Page {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var ids []string
	for id, d := range m.cols[collection] {
		if containsAll(d.words, words) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	p := Page{Documents: []Document{}, Total: len(ids), Offset: offset, Limit: limit}
	for i := offset; i < len(ids) && i < offset+limit; i++ {
		p.Documents = append(p.Documents, m.cols[collection][ids[i]].doc)
	}
	return p
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
