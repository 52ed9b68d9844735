package engine

import "sync"

// waiters wakes verify steps when their incident resolves in this process.
// Verify also polls the store, which covers a resolution that reached
// another replica.
type waiters struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]bool
}

func newWaiters() *waiters { return &waiters{m: map[string]map[chan struct{}]bool{}} }

func (w *waiters) wait(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m[id] == nil {
		w.m[id] = map[chan struct{}]bool{}
	}
	w.m[id][ch] = true
	return ch
}

func (w *waiters) done(id string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m[id], ch)
	if len(w.m[id]) == 0 {
		delete(w.m, id)
	}
}

func (w *waiters) signal(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
